/*
 * RefVerify: the reference's way of keeping and checking API keys, rebuilt for comparison.
 *
 * As the reference does: a Java PKCS#12 KeyStore, one SecretKeyEntry per API key whose secret
 * is the key text itself, protected by a password fixed in the program; to check a key, load
 * the whole file, then decrypt the entries one by one and compare with String.equals.
 *
 *   java RefVerify make    FILE KEYS N       write FILE with N new keys, their text to KEYS
 *   java RefVerify create  FILE ALIAS        add one key (the CLI's create)
 *   java RefVerify list    FILE              print every alias with its masked key
 *   java RefVerify verify  FILE KEY          exit 0 when KEY is a stored key, 1 otherwise
 *   java RefVerify bench   FILE KEYS SECS    time one check (load + scan), valid and unknown
 */
import java.io.BufferedWriter;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.util.Collections;
import java.util.List;
import java.util.Locale;
import java.util.Random;
import java.util.UUID;
import javax.crypto.SecretKey;
import javax.crypto.spec.SecretKeySpec;

public final class RefVerify {
    /* The reference keeps its keystore password in its source; so does this program. */
    private static final char[] PASSWORD = "metricshub-keystore-password".toCharArray();
    private static final KeyStore.PasswordProtection PROTECTION =
            new KeyStore.PasswordProtection(PASSWORD);

    private RefVerify() {}

    static KeyStore load(Path file) throws IOException, GeneralSecurityException {
        KeyStore ks = KeyStore.getInstance("PKCS12");
        if (Files.exists(file)) {
            try (InputStream in = new FileInputStream(file.toFile())) {
                ks.load(in, PASSWORD);
            }
        } else {
            ks.load(null, PASSWORD);
        }
        return ks;
    }

    static void store(KeyStore ks, Path file) throws IOException, GeneralSecurityException {
        /* As the reference: truncate the live file and write it in place. */
        try (OutputStream out = new FileOutputStream(file.toFile())) {
            ks.store(out, PASSWORD);
        }
    }

    static String add(KeyStore ks, String alias) throws GeneralSecurityException {
        String key = UUID.randomUUID().toString();
        SecretKey secret = new SecretKeySpec(key.getBytes(StandardCharsets.UTF_8), "AES");
        ks.setEntry(alias, new KeyStore.SecretKeyEntry(secret), PROTECTION);
        return key;
    }

    static String secretOf(KeyStore ks, String alias) throws GeneralSecurityException {
        KeyStore.Entry e = ks.getEntry(alias, PROTECTION);
        if (!(e instanceof KeyStore.SecretKeyEntry))
            return null;
        byte[] raw = ((KeyStore.SecretKeyEntry) e).getSecretKey().getEncoded();
        return new String(raw, StandardCharsets.UTF_8);
    }

    /* One check as the reference makes it on every request. */
    static boolean check(Path file, String key) throws IOException, GeneralSecurityException {
        KeyStore ks = load(file);
        for (String alias : Collections.list(ks.aliases())) {
            if (key.equals(secretOf(ks, alias)))
                return true;
        }
        return false;
    }

    static void make(Path file, Path keys, int n) throws IOException, GeneralSecurityException {
        KeyStore ks = load(file);
        try (BufferedWriter w = Files.newBufferedWriter(keys)) {
            for (int i = 1; i <= n; i++) {
                w.write(add(ks, String.format(Locale.ROOT, "key-%06d", i)));
                w.newLine();
            }
        }
        store(ks, file);
    }

    /* Seconds per check, { CPU time of this thread (as the C and Lua benchmarks count, so that
     * other processes on a busy machine count as little as they can), wall time }: at least 3
     * checks, until secs of CPU time have passed. A valid key is drawn at random for each
     * check, so on average half the entries are decrypted before the match. */
    static double[] timeChecks(Path file, List<String> keys, boolean valid, double secs, Random rnd)
            throws IOException, GeneralSecurityException {
        ThreadMXBean cpu = ManagementFactory.getThreadMXBean();
        String unknown = UUID.randomUUID().toString();
        int n = 0;
        long w0 = System.nanoTime(), t0 = cpu.getCurrentThreadCpuTime(), t;
        do {
            String key = valid ? keys.get(rnd.nextInt(keys.size())) : unknown;
            if (check(file, key) != valid)
                throw new IllegalStateException(
                        "wrong answer for " + (valid ? "a valid" : "an unknown") + " key");
            n++;
            t = cpu.getCurrentThreadCpuTime();
        } while (n < 3 || (t - t0) / 1e9 < secs);
        return new double[] {(t - t0) / 1e9 / n, (System.nanoTime() - w0) / 1e9 / n};
    }

    public static void main(String[] args) throws Exception {
        String cmd = args.length > 0 ? args[0] : "";
        switch (cmd) {
        case "make":
            make(Path.of(args[1]), Path.of(args[2]), Integer.parseInt(args[3]));
            break;
        case "create": {
            Path file = Path.of(args[1]);
            KeyStore ks = load(file);
            String key = add(ks, args[2]);
            store(ks, file);
            System.out.println("API key created for alias '" + args[2] + "': " + key);
            System.out.println("Please store this key securely, as it will not be shown again.");
            break;
        }
        case "list": {
            KeyStore ks = load(Path.of(args[1]));
            for (String alias : Collections.list(ks.aliases())) {
                String key = secretOf(ks, alias);
                String hint = key == null ? "" : key.substring(Math.max(0, key.length() - 4));
                System.out.println(alias + " ********************" + hint);
            }
            break;
        }
        case "verify":
            System.exit(check(Path.of(args[1]), args[2]) ? 0 : 1);
            break;
        case "bench": {
            Path file = Path.of(args[1]);
            List<String> keys = Files.readAllLines(Path.of(args[2]));
            double secs = Double.parseDouble(args[3]);
            Random rnd = new Random(1);
            /* Warm up the JIT first, as a long-running server would be. */
            timeChecks(file, keys, true, secs / 2, rnd);
            double[] v = timeChecks(file, keys, true, secs, rnd);
            double[] u = timeChecks(file, keys, false, secs, rnd);
            System.out.printf(Locale.ROOT, "keys=%d valid_ms=%.2f unknown_ms=%.2f",
                    keys.size(), v[0] * 1e3, u[0] * 1e3);
            System.out.printf(Locale.ROOT, " valid_wall_ms=%.2f unknown_wall_ms=%.2f%n",
                    v[1] * 1e3, u[1] * 1e3);
            break;
        }
        default:
            System.err.println("usage: java RefVerify make|create|list|verify|bench ...");
            System.exit(2);
        }
    }
}
