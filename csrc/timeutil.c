/*
 * timeutil.c: date-times as the user types them (ISO 8601, local time unless "Z" or an offset
 * is given) and as the record stores them (DER GeneralizedTime, UTC), to and from Unix seconds.
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

/* Local time to Unix seconds. mktime moves a time that falls in a DST gap (02:30 on the
 * spring-forward day), so a time that does not come back unchanged did not exist. */
static int seconds_local(const civil *c, int64_t *out)
{
    struct tm tm, back;
    time_t t;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = c->year - 1900;
    tm.tm_mon = c->month - 1;
    tm.tm_mday = c->day;
    tm.tm_hour = c->hour;
    tm.tm_min = c->min;
    tm.tm_sec = c->sec;
    tm.tm_isdst = -1;
    /* -1 is both the error value and 1969-12-31T23:59:59Z: the round trip tells them apart. */
    t = mktime(&tm);
    if (localtime_r(&t, &back) == NULL)
        return -1;
    if (back.tm_year != c->year - 1900 || back.tm_mon != c->month - 1 || back.tm_mday != c->day ||
        back.tm_hour != c->hour || back.tm_min != c->min || back.tm_sec != c->sec)
        return -1;
    *out = (int64_t)t;
    return 0;
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

int time_parse_iso(const char *s, size_t len, int64_t *out)
{
    civil c;
    int64_t t;

    if (len < 19 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':')
        return -1;
    if (read_civil(s, iso_at, &c) != 0)
        return -1;

    if (len == 19) {
        if (seconds_local(&c, &t) != 0)
            return -1;
    } else if (len == 20 && s[19] == 'Z') {
        t = seconds_utc(&c);
    } else if (len == 25 && (s[19] == '+' || s[19] == '-') && s[22] == ':') {
        /* Real zones span -12:00 .. +14:00. */
        int oh = digits(s + 20, 2), om = digits(s + 23, 2), offset;
        if (oh < 0 || oh > 14 || om < 0 || om > 59)
            return -1;
        offset = oh * 3600 + om * 60;
        t = seconds_utc(&c) - (s[19] == '+' ? offset : -offset);
    } else {
        return -1;
    }
    if (t < 0 || t > AK_TIME_MAX)
        return -1;
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

/* The local zone's offset from UTC at Unix time t, in seconds. */
static long offset_at(int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    return localtime_r(&tt, &tm) != NULL ? tm.tm_gmtoff : 0;
}

/* Local time to Unix seconds as Java's LocalDateTime.atZone resolves it: a time that exists
 * once has its offset; one in an overlap (clocks set back) takes the earlier offset, the one
 * before the change; one in a gap (clocks set forward) is moved later by the gap's length,
 * which is the offset before the change too. No zone changes its offset twice in two days. */
static int64_t seconds_local_java(const civil *c)
{
    int64_t guess = seconds_utc(c);
    long before = offset_at(guess - 86400), after = offset_at(guess + 86400);
    if (before != after && offset_at(guess - before) != before && offset_at(guess - after) == after)
        return guess - after; /* exists once, after the change */
    return guess - before;
}

int time_parse_java_local(const char *s, size_t len, int64_t *out)
{
    civil c;
    char full[19];
    int64_t t;

    /* YYYY-MM-DDThh:mm, then optionally :ss, then optionally .f to .fffffffff */
    if (len < 16 || len == 17 || len == 18 || len == 20 || len > 29 || s[4] != '-' || s[7] != '-' ||
        s[10] != 'T' || s[13] != ':' || (len > 16 && s[16] != ':') || (len > 19 && s[19] != '.'))
        return -1;
    for (size_t i = 20; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return -1;
    memcpy(full, s, len < 19 ? 16 : 19);
    if (len == 16)
        memcpy(full + 16, ":00", 3);
    if (read_civil(full, iso_at, &c) != 0)
        return -1;
    /* A fraction of a second is dropped: the key expires at the second it falls in. */
    t = seconds_local_java(&c);
    if (t < 0 || t > AK_TIME_MAX)
        return -1;
    *out = t;
    return 0;
}
