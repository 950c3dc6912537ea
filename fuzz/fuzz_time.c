/*
 * fuzz_time.c: time_parse_iso and time_parse_gentime on arbitrary bytes.
 *
 * Checks, besides memory safety:
 * - every accepted time lies in 1970-01-01T00:00:00Z .. 9999-12-31T23:59:59Z;
 * - GeneralizedTime and "...Z": accept exactly what glibc's timegm/gmtime agree is a real
 *   UTC date-time in range (an independent oracle), with timegm's value, and format back to
 *   the same bytes;
 * - "+hh:mm"/"-hh:mm": the UTC value shifted by the offset; its UTC text parses back to it;
 * - local "YYYY-MM-DDThh:mm:ss", under several time zones with and without daylight saving:
 *   formats back to the same bytes (or, in a DST gap, to them moved later by the gap, as Java's
 *   atZone does), takes the earlier offset in an overlap, and parses back to the same value;
 *   under UTC it means the same as the "Z" form;
 * - minutes only and fractions of a second: the same as the full form with seconds.
 */
#include "apikey.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HARNESS "fuzz_time"
#include "fuzz.h"

/* POSIX rules need no zone files: UTC, Europe, US, a half-hour zone with a half-hour shift
 * (Lord Howe), and the extremes of real offsets. */
static const char *const zones[] = {
    "UTC0",
    "CET-1CEST,M3.5.0,M10.5.0/3",
    "EST5EDT,M3.2.0,M11.1.0",
    "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0",
    "<-12>12",
    "<+14>-14",
};

static void set_zone(const char *tz)
{
    setenv("TZ", tz, 1);
    tzset();
}

static int num(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* The oracle: a UTC civil date-time is real when timegm/gmtime give back the same fields. */
static int oracle_utc(int y, int mo, int d, int h, int mi, int s, int64_t *out)
{
    struct tm tm, back;
    time_t t;
    if (y < 1970 || y > 9999 || mo < 0 || d < 0 || h < 0 || mi < 0 || s < 0)
        return -1;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;
    t = timegm(&tm);
    if (gmtime_r(&t, &back) == NULL || back.tm_year != y - 1900 || back.tm_mon != mo - 1 ||
        back.tm_mday != d || back.tm_hour != h || back.tm_min != mi || back.tm_sec != s)
        return -1;
    *out = (int64_t)t;
    return 0;
}

static void check_gentime(const char *s, size_t n)
{
    int64_t t = 0, want = 0;
    char buf[64];
    int got = time_parse_gentime(s, n, &t);
    int ok = n == 15 && s[14] == 'Z' &&
             oracle_utc(num(s, 4), num(s + 4, 2), num(s + 6, 2), num(s + 8, 2), num(s + 10, 2),
                        num(s + 12, 2), &want) == 0;
    CHECK((got == 0) == ok, "gentime %.*s: parser says %d, oracle %d", (int)n, s, got, ok);
    if (got != 0)
        return;
    CHECK(t == want, "gentime %.*s: %lld, oracle %lld", (int)n, s, (long long)t, (long long)want);
    time_format_gentime(t, buf, sizeof buf);
    CHECK(strlen(buf) == n && memcmp(buf, s, n) == 0, "gentime %.*s formats back as %s", (int)n, s,
          buf);
}

static int iso_shape(const char *s, size_t n)
{
    return n >= 19 && s[4] == '-' && s[7] == '-' && s[10] == 'T' && s[13] == ':' && s[16] == ':';
}

static int iso_oracle_utc(const char *s, int64_t *out)
{
    return oracle_utc(num(s, 4), num(s + 5, 2), num(s + 8, 2), num(s + 11, 2), num(s + 14, 2),
                      num(s + 17, 2), out);
}

/* The forms Java's LocalDateTime.parse also takes, minutes only ("YYYY-MM-DDThh:mm") and a
 * fraction of 0 to 9 digits after the seconds (dropped), each with the same suffix as the
 * 19-byte form ("", "Z", "+hh:mm"): the same answer as that form, whose own oracles are above.
 * Anything else, and a year of more than 4 digits, is never accepted. */
static void check_iso_other(const char *s, size_t n, int got, int64_t t)
{
    char canon[64];
    size_t i = 16, k;
    int64_t want = 0;
    int expect;

    if (n < 16 || n > 40 || s[0] == '+' || (s[4] != '-')) {
        CHECK(got != 0, "iso %.*s: accepted an unknown form", (int)n, s);
        return;
    }
    memcpy(canon, s, 16);
    if (n - i >= 3 && s[i] == ':') {
        memcpy(canon + 16, s + i, 3);
        i += 3;
        if (i < n && s[i] == '.')
            for (i++, k = 0; i < n && k < 9 && s[i] >= '0' && s[i] <= '9'; i++, k++)
                ;
    } else {
        memcpy(canon + 16, ":00", 3);
    }
    if (!(i == n || (n - i == 1 && s[i] == 'Z') ||
          (n - i == 6 && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':'))) {
        CHECK(got != 0, "iso %.*s: accepted an unknown suffix", (int)n, s);
        return;
    }
    memcpy(canon + 19, s + i, n - i);
    expect = time_parse_iso(canon, 19 + n - i, &want);
    CHECK(got == expect, "iso %.*s: parser says %d, its full form %.*s %d", (int)n, s, got,
          (int)(19 + n - i), canon, expect);
    CHECK(got != 0 || t == want, "iso %.*s: %lld, its full form %lld", (int)n, s, (long long)t,
          (long long)want);
}

static void check_iso_utc(const char *s, size_t n)
{
    int64_t t = 0, back = 0, want = 0;
    char buf[64];
    int got = time_parse_iso(s, n, &t);
    if (got == 0)
        CHECK(t >= 0 && t <= AK_TIME_MAX, "iso %.*s: %lld out of range", (int)n, s, (long long)t);

    if (n == 20 && s[19] == 'Z') {
        int ok = iso_shape(s, n) && iso_oracle_utc(s, &want) == 0;
        CHECK((got == 0) == ok, "iso %.*s: parser says %d, oracle %d", (int)n, s, got, ok);
        if (got != 0)
            return;
        CHECK(t == want, "iso %.*s: %lld, oracle %lld", (int)n, s, (long long)t, (long long)want);
        time_format_utc(t, buf, sizeof buf);
        CHECK(strlen(buf) == n && memcmp(buf, s, n) == 0, "iso %.*s formats back as %s", (int)n, s,
              buf);
    } else if (n == 25 && (s[19] == '+' || s[19] == '-') && s[22] == ':') {
        int oh = num(s + 20, 2), om = num(s + 23, 2);
        int ok = iso_shape(s, n) && iso_oracle_utc(s, &want) == 0 && oh >= 0 && oh <= 14 &&
                 om >= 0 && om <= 59;
        if (ok) {
            want -= (s[19] == '+' ? 1 : -1) * (int64_t)(oh * 3600 + om * 60);
            ok = want >= 0 && want <= AK_TIME_MAX;
        }
        CHECK((got == 0) == ok, "iso %.*s: parser says %d, oracle %d", (int)n, s, got, ok);
        if (got != 0)
            return;
        CHECK(t == want, "iso %.*s: %lld, oracle %lld", (int)n, s, (long long)t, (long long)want);
        time_format_utc(t, buf, sizeof buf);
        CHECK(time_parse_iso(buf, strlen(buf), &back) == 0 && back == t,
              "iso %.*s: its UTC form %s does not parse back", (int)n, s, buf);
    } else if (n != 19) {
        check_iso_other(s, n, got, t);
    }
}

/* The local zone's offset at t. */
static long offset_at(int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    return localtime_r(&tt, &tm) != NULL ? tm.tm_gmtoff : 0;
}

/* The local fields of s read as if UTC: the oracle's value, or -1. */
static int64_t fields_utc(const char *s)
{
    int64_t v = -1;
    return iso_oracle_utc(s, &v) == 0 ? v : -1;
}

/* A local time that does not format back fell in a DST gap: Java moves it later by the gap's
 * length, so t shows as the time given plus the gap, and the clocks went forward by that much in
 * the day before t. */
static void check_gap(const char *s, size_t n, int64_t t, const char *zone)
{
    int64_t guess = fields_utc(s);
    long gap = offset_at(t) - offset_at(t - 86400);
    CHECK(guess >= 0 && gap > 0 && t + offset_at(t) == guess + gap,
          "iso %.*s (TZ=%s): %lld formats back differently, and not as a gap of %ld s moves it",
          (int)n, s, zone, (long long)t, gap);
}

/* A local time in an overlap (two instants show as it) takes the earlier offset, as Java does:
 * the other instant, when there is one, is later. */
static void check_overlap(const char *s, size_t n, int64_t t, const char *zone)
{
    int64_t guess = fields_utc(s), other;
    long o = offset_at(t), later = offset_at(t + 86400), earlier = offset_at(t - 86400);
    char buf[64];

    for (int k = 0; k < 2; k++) {
        long o2 = k == 0 ? later : earlier;
        if (o2 == o || guess < 0)
            continue;
        other = guess - o2;
        time_format_local(other, buf, sizeof buf);
        CHECK(strlen(buf) != n || memcmp(buf, s, n) != 0 || t < other,
              "iso %.*s (TZ=%s): %lld, but %lld, earlier, shows the same", (int)n, s, zone,
              (long long)t, (long long)other);
    }
}

static void check_iso_local(const char *s, size_t n)
{
    char z[20];
    int64_t tz_utc = 0;
    int z_ok;
    if (n != 19)
        return;
    memcpy(z, s, 19);
    z[19] = 'Z';
    z_ok = time_parse_iso(z, 20, &tz_utc) == 0;
    for (size_t i = 0; i < sizeof zones / sizeof zones[0]; i++) {
        int64_t t = 0, back = 0;
        char buf[64];
        int got;
        set_zone(zones[i]);
        got = time_parse_iso(s, n, &t);
        if (i == 0) {
            CHECK((got == 0) == z_ok, "iso %.*s under UTC: %d, its Z form %d", (int)n, s, got,
                  z_ok);
            CHECK(got != 0 || t == tz_utc, "iso %.*s under UTC: %lld, its Z form %lld", (int)n, s,
                  (long long)t, (long long)tz_utc);
        }
        if (got != 0)
            continue;
        CHECK(t >= 0 && t <= AK_TIME_MAX, "iso %.*s (TZ=%s): %lld out of range", (int)n, s,
              zones[i], (long long)t);
        time_format_local(t, buf, sizeof buf);
        if (strlen(buf) != n || memcmp(buf, s, n) != 0)
            check_gap(s, n, t, zones[i]);
        else
            check_overlap(s, n, t, zones[i]);
        CHECK(time_parse_iso(buf, strlen(buf), &back) == 0 && back == t,
              "iso %.*s (TZ=%s): parses back as %lld, not %lld", (int)n, s, zones[i],
              (long long)back, (long long)t);
    }
    set_zone(zones[0]);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    set_zone(zones[0]);
    return 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    /* An exact-size copy without a terminating NUL: the parsers must honour len. */
    char *s = malloc(size > 0 ? size : 1);
    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    check_gentime(s, size);
    check_iso_utc(s, size);
    check_iso_local(s, size);
    free(s);
    return 0;
}
