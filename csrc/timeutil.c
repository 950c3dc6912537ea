/*
 * timeutil.c: date-times as the user types them (ISO 8601 as Java's LocalDateTime.parse reads
 * it, local time unless "Z" or an offset is given), as MetricsHub stores them (the same, local)
 * and as the record stores them (DER GeneralizedTime, UTC), to and from Unix seconds. A local
 * time is resolved as Java's LocalDateTime.atZone resolves it, by one function for both.
 * Parsers are strict and read exactly len bytes (a NUL inside is just an invalid character).
 * Every time they accept lies in 1970-01-01T00:00:00Z .. 9999-12-31T23:59:59Z, so any of them
 * formats back as a 4-digit year.
 */
#include "apikey.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define MIN_YEAR 1970
#define MAX_YEAR 9999

typedef struct {
    int year, month, day, hour, min, sec;
} civil;

/* n decimal digits at s; -1 if any is not a digit. */
static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static int is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

static int civil_valid(const civil *c)
{
    return c->year >= MIN_YEAR && c->year <= MAX_YEAR && c->month >= 1 && c->month <= 12 &&
           c->day >= 1 && c->day <= days_in_month(c->year, c->month) && c->hour >= 0 &&
           c->hour <= 23 && c->min >= 0 && c->min <= 59 && c->sec >= 0 && c->sec <= 59;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;
    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int64_t seconds_utc(const civil *c)
{
    return days_from_civil(c->year, c->month, c->day) * 86400 + c->hour * 3600 + c->min * 60 +
           c->sec;
}

/* The local zone's offset from UTC at Unix time t, in seconds. */
static long offset_at(int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    return localtime_r(&tt, &tm) != NULL ? tm.tm_gmtoff : 0;
}

/* Local time to Unix seconds as Java's LocalDateTime.atZone resolves it, the one rule for every
 * local time the core reads: a time that exists once has its offset; one in an overlap (clocks
 * set back) takes the earlier offset, the one before the change; one in a gap (clocks set
 * forward) is moved later by the gap's length, which is the offset before the change too. No
 * zone changes its offset twice in two days. */
static int64_t seconds_local_java(const civil *c)
{
    int64_t guess = seconds_utc(c);
    long before = offset_at(guess - 86400), after = offset_at(guess + 86400);
    if (before != after && offset_at(guess - before) != before && offset_at(guess - after) == after)
        return guess - after; /* exists once, after the change */
    return guess - before;
}

/* Where year, month, day, hour, minute and second start in each form. */
static const int iso_at[6] = {0, 5, 8, 11, 14, 17};    /* YYYY-MM-DDThh:mm:ss */
static const int gentime_at[6] = {0, 4, 6, 8, 10, 12}; /* YYYYMMDDhhmmssZ */

/* Reads the six fields at the offsets given (the caller has checked the length) and checks
 * that they make a real date and time. 0, or -1. */
static int read_civil(const char *s, const int at[6], civil *c)
{
    c->year = digits(s + at[0], 4);
    c->month = digits(s + at[1], 2);
    c->day = digits(s + at[2], 2);
    c->hour = digits(s + at[3], 2);
    c->min = digits(s + at[4], 2);
    c->sec = digits(s + at[5], 2);
    return civil_valid(c) ? 0 : -1;
}

#define YEAR_DIGITS_MAX 9 /* Java's LocalDateTime ends at the year 999,999,999 */

/*
 * A local date-time as Java's LocalDateTime.parse reads it (ISO_LOCAL_DATE_TIME):
 * "YYYY-MM-DDThh:mm", then optionally ":ss", then optionally "." and 0 to 9 digits of a
 * fraction, which is dropped (a time keeps whole seconds, as Java's toEpochSecond does). A
 * year of 5 to 9 digits, written with "+" as Java writes it or without, is read only to say
 * that it is after 9999. Reads from the start of [s, s + len): *used is how many bytes the
 * date-time took. 0 with *c; 1 with *used for a year after 9999 (the rest checked); -1 when
 * malformed.
 */
static int read_local(const char *s, size_t len, civil *c, size_t *used)
{
    size_t y = len > 0 && s[0] == '+' ? 1 : 0, n = 0, i;
    char fixed[19];
    int big;

    while (y + n < len && n <= YEAR_DIGITS_MAX && s[y + n] >= '0' && s[y + n] <= '9')
        n++;
    if (n < 4 || n > YEAR_DIGITS_MAX || (y == 1 && n == 4))
        return -1; /* Java writes "+" only before a year of more than 4 digits */
    big = n > 4;
    /* The rest, "-MM-DDThh:mm[:ss[.f]]", in a fixed-width copy with a 4-digit year. */
    i = y + n;
    if (len - i < 12)
        return -1;
    memcpy(fixed, "2000", 4); /* a leap year: February 29 is checked below for a big year */
    memcpy(fixed + 4, s + i, 12);
    i += 12;
    if (i < len && s[i] == ':') {
        if (len - i < 3)
            return -1;
        memcpy(fixed + 16, s + i, 3);
        i += 3;
        if (i < len && s[i] == '.') {
            size_t f = 0;
            i++;
            while (i + f < len && f < 9 && s[i + f] >= '0' && s[i + f] <= '9')
                f++;
            i += f;
        }
    } else {
        memcpy(fixed + 16, ":00", 3);
    }
    if (fixed[4] != '-' || fixed[7] != '-' || fixed[10] != 'T' || fixed[13] != ':' ||
        fixed[16] != ':' || read_civil(fixed, iso_at, c) != 0)
        return -1;
    *used = i;
    if (big) {
        long year = 0;
        for (size_t k = y; k < y + n; k++)
            year = year * 10 + (s[k] - '0');
        if (year <= MAX_YEAR || (c->month == 2 && c->day == 29 && !is_leap((int)(year % 400))))
            return -1; /* 09999 is not a year after 9999; and no February 29 of a common year */
        return 1;
    }
    c->year = digits(s, 4);
    return c->day <= days_in_month(c->year, c->month) ? 0 : -1;
}

/* A time before 0 (1970-01-01T00:00:00Z), or a year after 9999 as written or a time after
 * AK_TIME_MAX. A local time late in 1969 west of Greenwich is in 1970 in UTC, as in Java. */
static int in_range(const civil *c, int64_t t)
{
    if (t < 0)
        return AK_TIME_EARLY;
    if (c->year > MAX_YEAR || t > AK_TIME_MAX)
        return AK_TIME_LATE;
    return 0;
}

int time_parse_iso(const char *s, size_t len, int64_t *out)
{
    civil c;
    size_t i;
    int64_t t;
    int rc = read_local(s, len, &c, &i);

    if (rc < 0)
        return -1;
    if (i == len) {
        if (rc == 1)
            return AK_TIME_LATE;
        t = seconds_local_java(&c);
    } else if (len - i == 1 && s[i] == 'Z') {
        if (rc == 1)
            return AK_TIME_LATE;
        t = seconds_utc(&c);
    } else if (len - i == 6 && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
        /* Real zones span -12:00 .. +14:00. */
        int oh = digits(s + i + 1, 2), om = digits(s + i + 4, 2), offset;
        if (oh < 0 || oh > 14 || om < 0 || om > 59)
            return -1;
        if (rc == 1)
            return AK_TIME_LATE;
        offset = oh * 3600 + om * 60;
        t = seconds_utc(&c) - (s[i] == '+' ? offset : -offset);
    } else {
        return -1;
    }
    if ((rc = in_range(&c, t)) != 0)
        return rc;
    *out = t;
    return 0;
}

static void format_tm(const struct tm *tm, const char *fmt, char *buf, size_t size)
{
    snprintf(buf, size, fmt, tm->tm_year + 1900, tm->tm_mon + 1, tm->tm_mday, tm->tm_hour,
             tm->tm_min, tm->tm_sec);
}

/* The times this file formats come from its parsers (0 .. AK_TIME_MAX); a value that gmtime or
 * localtime cannot convert still prints as a visible placeholder, never garbage. */
static void format_time(int64_t t, int local, const char *fmt, char *buf, size_t size)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if ((local ? localtime_r(&tt, &tm) : gmtime_r(&tt, &tm)) == NULL) {
        snprintf(buf, size, "(invalid time)");
        return;
    }
    format_tm(&tm, fmt, buf, size);
}

void time_format_local(int64_t t, char *buf, size_t size)
{
    format_time(t, 1, "%04d-%02d-%02dT%02d:%02d:%02d", buf, size);
}

void time_format_utc(int64_t t, char *buf, size_t size)
{
    format_time(t, 0, "%04d-%02d-%02dT%02d:%02d:%02dZ", buf, size);
}

void time_format_gentime(int64_t t, char *buf, size_t size)
{
    format_time(t, 0, "%04d%02d%02d%02d%02d%02dZ", buf, size);
}

int time_parse_gentime(const char *s, size_t len, int64_t *out)
{
    civil c;
    if (len != 15 || s[14] != 'Z')
        return -1;
    if (read_civil(s, gentime_at, &c) != 0)
        return -1;
    *out = seconds_utc(&c);
    return 0;
}

int time_parse_java_local(const char *s, size_t len, int64_t *out)
{
    civil c;
    size_t used;
    int64_t t;

    if (read_local(s, len, &c, &used) != 0 || used != len)
        return -1;
    t = seconds_local_java(&c);
    if (in_range(&c, t) != 0)
        return -1;
    *out = t;
    return 0;
}
