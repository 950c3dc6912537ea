// MetricsHubStore: reads and writes a keystore as MetricsHub (metricshub-community) does, for
// spec/interop_spec.lua. One JVM runs a list of operations, so that a spec pays for one start.
//
//   java MetricsHubStore FILE PASSWORD OP...     PASSWORD "-": MetricsHub's store password
//
// Operations, each printing one line or more:
//   masterkey               adds "masterKey" as SecurityManager.generateMasterKey does; prints
//                           "masterkey HASH" (SHA-256 of the key's bytes)
//   create ALIAS [EXPIRY]   a key as ApiKeyCliService.createApiKey does (EXPIRY through
//                           LocalDateTime.parse, refused when past); prints "created ALIAS KEY"
//   put ALIAS KEY [EXPIRY]  the same entry with a given key and expiry (an expired one as
//                           MetricsHub once wrote it); prints "put ALIAS"
//   find TOKEN              as the server (ApiKeyService.findApiKeyByToken, then isValid): a
//                           whole load and scan; prints "found ALIAS valid|expired" or "none"
//   keys                    as ApiKeyCliService's list: "key ALIAS KEY EXPIRY|-" per api_key:
//                           entry
//   aliases                 every alias with its entry type: "alias NAME secret|private|cert"
//   master                  prints "masterkey HASH" of the stored masterKey, or "masterkey none"
//   bench N                 N server-side look-ups of an unknown token; prints "bench MS"
//   fill N                  N keys as create makes them (aliases key-000001...), in one write;
//                           prints each key, one a line (for bench/metricshub.sh)
//
// Every write truncates the file and writes it in place, as MetricsHub does.
import java.io.File;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.nio.charset.StandardCharsets;
import java.security.KeyStore;
import java.security.KeyStore.PasswordProtection;
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.time.LocalDateTime;
import java.util.Collections;
import java.util.HexFormat;
import java.util.UUID;
import javax.crypto.SecretKey;
import javax.crypto.SecretKeyFactory;
import javax.crypto.spec.PBEKeySpec;
import javax.crypto.spec.SecretKeySpec;

public class MetricsHubStore {
    // SecurityManager.KEY_STORE_PASSWORD, AgentConstants.API_KEY_PREFIX, the entry password and
    // the master key's alias, as MetricsHub has them.
    static final char[] STORE_PASSWORD =
        "Matrix, Credits: Bertrand, Elvis, Fadhela, Huan, Nassim, Ramassh and Thomas".toCharArray();
    static final String PREFIX = "api_key:";
    static final char[] ENTRY_PASSWORD = "secret".toCharArray();
    static final String MASTER = "masterKey";

    static File file;
    static char[] storePassword;

    static KeyStore load() throws Exception {
        KeyStore ks = KeyStore.getInstance("PKCS12");
        if (file.exists()) {
            try (FileInputStream in = new FileInputStream(file)) {
                ks.load(in, storePassword);
            }
        } else {
            ks.load(null, null);
        }
        return ks;
    }

    static void store(KeyStore ks) throws Exception {
        try (FileOutputStream out = new FileOutputStream(file)) {
            ks.store(out, storePassword);
        }
    }

    static String sha256(byte[] b) throws Exception {
        return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(b));
    }

    static void put(String alias, String key, LocalDateTime expiry) throws Exception {
        KeyStore ks = load();
        String text = expiry != null ? key + "__" + expiry : key;
        SecretKeySpec secret = new SecretKeySpec(text.getBytes(StandardCharsets.UTF_8), "AES");
        ks.setEntry(PREFIX + alias, new KeyStore.SecretKeyEntry(secret),
            new PasswordProtection(ENTRY_PASSWORD));
        store(ks);
    }

    // ApiKeyService.findApiKeyByToken and isValid: null when not found or not valid.
    static String find(String token) {
        try {
            KeyStore ks = load();
            for (String alias : Collections.list(ks.aliases())) {
                if (!alias.startsWith(PREFIX)) {
                    continue;
                }
                KeyStore.Entry e = ks.getEntry(alias, new PasswordProtection(ENTRY_PASSWORD));
                if (e instanceof KeyStore.SecretKeyEntry s) {
                    String[] parts = new String(s.getSecretKey().getEncoded(), StandardCharsets.UTF_8).split("__");
                    LocalDateTime expiry = parts.length > 1 ? LocalDateTime.parse(parts[1]) : null;
                    if (token.equals(parts[0])) {
                        boolean valid = expiry == null || expiry.isAfter(LocalDateTime.now());
                        return alias.substring(PREFIX.length()) + (valid ? " valid" : " expired");
                    }
                }
            }
        } catch (Exception e) {
            return "error " + e.getClass().getSimpleName();
        }
        return null;
    }

    public static void main(String[] args) throws Exception {
        file = new File(args[0]);
        storePassword = args[1].equals("-") ? STORE_PASSWORD : args[1].toCharArray();
        for (int i = 2; i < args.length; i++) {
            switch (args[i]) {
            case "masterkey" -> {
                KeyStore ks = load();
                char[] chars = new char[32];
                SecureRandom random = new SecureRandom();
                for (int j = 0; j < chars.length; j++) {
                    chars[j] = (char) ('!' + random.nextInt(90));
                }
                byte[] salt = new byte[16];
                random.nextBytes(salt);
                SecretKey key = SecretKeyFactory.getInstance("PBKDF2WithHmacSHA1")
                    .generateSecret(new PBEKeySpec(chars, salt, 2333, 256));
                ks.setEntry(MASTER, new KeyStore.SecretKeyEntry(key), new PasswordProtection(storePassword));
                store(ks);
                System.out.println("masterkey " + sha256(key.getEncoded()));
            }
            case "create" -> {
                String alias = args[++i];
                LocalDateTime expiry = null;
                if (i + 1 < args.length && args[i + 1].matches("\\d{4}-.*")) {
                    expiry = LocalDateTime.parse(args[++i]);
                    if (expiry.isBefore(LocalDateTime.now())) {
                        throw new IllegalArgumentException("Expiration date time must be in the future");
                    }
                }
                if (load().getEntry(PREFIX + alias, new PasswordProtection(ENTRY_PASSWORD)) != null) {
                    throw new IllegalStateException("An API key with alias '" + alias + "' already exists.");
                }
                String key = UUID.randomUUID().toString();
                put(alias, key, expiry);
                System.out.println("created " + alias + " " + key);
            }
            case "put" -> {
                String alias = args[++i], key = args[++i];
                LocalDateTime expiry = null;
                if (i + 1 < args.length && args[i + 1].matches("\\d{4}-.*")) {
                    expiry = LocalDateTime.parse(args[++i]);
                }
                put(alias, key, expiry);
                System.out.println("put " + alias);
            }
            case "find" -> {
                String found = find(args[++i]);
                System.out.println(found == null ? "none" : "found " + found);
            }
            case "keys" -> {
                KeyStore ks = load();
                for (String alias : Collections.list(ks.aliases())) {
                    if (alias.startsWith(PREFIX)
                        && ks.getEntry(alias, new PasswordProtection(ENTRY_PASSWORD)) instanceof KeyStore.SecretKeyEntry s) {
                        String[] parts = new String(s.getSecretKey().getEncoded(), StandardCharsets.UTF_8).split("__");
                        System.out.println("key " + alias.substring(PREFIX.length()) + " " + parts[0] + " "
                            + (parts.length > 1 ? LocalDateTime.parse(parts[1]).toString() : "-"));
                    }
                }
            }
            case "aliases" -> {
                KeyStore ks = load();
                for (String alias : Collections.list(ks.aliases())) {
                    String type = ks.entryInstanceOf(alias, KeyStore.SecretKeyEntry.class) ? "secret"
                        : ks.entryInstanceOf(alias, KeyStore.PrivateKeyEntry.class) ? "private" : "cert";
                    System.out.println("alias " + alias + " " + type);
                }
            }
            case "master" -> {
                KeyStore.Entry e = load().getEntry(MASTER, new PasswordProtection(storePassword));
                System.out.println("masterkey "
                    + (e instanceof KeyStore.SecretKeyEntry s ? sha256(s.getSecretKey().getEncoded()) : "none"));
            }
            case "bench" -> {
                int n = Integer.parseInt(args[++i]);
                long start = System.nanoTime();
                for (int j = 0; j < n; j++) {
                    find("00000000-0000-4000-8000-000000000000");
                }
                System.out.printf("bench %.1f%n", (System.nanoTime() - start) / 1e6 / n);
            }
            case "fill" -> {
                int n = Integer.parseInt(args[++i]);
                KeyStore ks = load();
                for (int j = 1; j <= n; j++) {
                    String key = UUID.randomUUID().toString();
                    SecretKeySpec secret = new SecretKeySpec(key.getBytes(StandardCharsets.UTF_8), "AES");
                    ks.setEntry(PREFIX + String.format("key-%06d", j), new KeyStore.SecretKeyEntry(secret),
                        new PasswordProtection(ENTRY_PASSWORD));
                    System.out.println(key);
                }
                store(ks);
            }
            default -> throw new IllegalArgumentException("unknown operation " + args[i]);
            }
        }
    }
}
