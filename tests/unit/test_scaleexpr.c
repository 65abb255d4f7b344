/*
 * test_scaleexpr.c - the scale condition grammar: accepted expressions
 * with their canonical text, refused ones with the exact column and
 * message, evaluation (units, precedence, missing values), and the "for"
 * tracker.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "scaleexpr.h"
#include "t.h"

static void
test_signals(void)
{
	int	 i;
	bool	 round = true;

	for (i = 0; i < SCALE_NSIGNALS; i++)
		if (scaleexpr_signal_find(scaleexpr_signal_name(i)) != i)
			round = false;
	ok(round, "every signal name finds its signal");
	is_int(scaleexpr_signal_find("ttfb_p95"), SCALE_TTFB_P95, "ttfb_p95");
	is_int(scaleexpr_signal_find("nope"), -1, "unknown name -> -1");
	ok(strcmp(scaleexpr_signal_name(99), "?") == 0, "name out of range");
	is_int(scaleexpr_signal_kind(SCALE_QUEUE_P95), SCALE_KIND_TIME,
	    "queue_p95 is a time");
	is_int(scaleexpr_signal_kind(SCALE_LOAD_AVG), SCALE_KIND_PERCENT,
	    "load_avg is a percentage");
	is_int(scaleexpr_signal_kind(SCALE_UP_SERVERS), SCALE_KIND_COUNT,
	    "up_servers is a count");
}

/* Accepted: text, canonical text, for_ms. */
static const struct {
	const char	*text;
	const char	*canon;
	uint64_t	 for_ms;
} good[] = {
	{ "ttfb_p95 > 200ms for 30s", "ttfb_p95 > 200ms for 30s", 30000 },
	{ "sessions_per_server < 2 for 60s", "sessions_per_server < 2 for 1m",
	  60000 },
	{ "ttfb_p95>200ms", "ttfb_p95 > 200ms", 0 },
	{ "  connect_p99 >= 1.5s\tfor 500ms ", "connect_p99 >= 1.5s for 500ms",
	  500 },
	{ "load_avg > 80% or load_max >= 95", "load_avg > 80% or "
	  "load_max >= 95", 0 },
	{ "up_servers < 2 or ttfb_p95 > 200ms and queued > 0",
	  "up_servers < 2 or ttfb_p95 > 200ms and queued > 0", 0 },
	{ "(up_servers < 2 or ttfb_p95 > 200ms) and queued > 0",
	  "(up_servers < 2 or ttfb_p95 > 200ms) and queued > 0", 0 },
	{ "not (queue_p95 > 0ms) and sessions == 0 for 2m",
	  "not queue_p95 > 0ms and sessions == 0 for 2m", 120000 },
	{ "not ((((((((((((((sessions > 1))))))))))))))", "not sessions > 1",
	  0 },
	{ "not not servers != 3", "not not servers != 3", 0 },
	{ "((duration_p50 <= 250us))", "duration_p50 <= 250us", 0 },
	{ "session_rate > 100 and (sessions > 1 and sessions < 9)",
	  "session_rate > 100 and (sessions > 1 and sessions < 9)", 0 },
	{ "queue_p99 > 1m for 1.5m", "queue_p99 > 1m for 90s", 90000 },
	{ "ttfb_p50 > 0.1us", "ttfb_p50 > 0.1us", 0 },
	{ "load_avg>0.000000000000001%for 47s",
	  "load_avg > 0.000000000000001% for 47s", 47000 },
	{ "sessions >= 007", "sessions >= 007", 0 },
	{ "up_servers < 1 for 60m", "up_servers < 1 for 60m", 3600000 },
};

static void
test_good(void)
{
	struct scaleexpr	 e, e2;
	char			 err[SCALEEXPR_ERR_MAX], buf[SCALEEXPR_TEXT_MAX],
				 buf2[SCALEEXPR_TEXT_MAX];
	size_t			 i;
	int			 rc;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		if (good[i].canon == NULL)
			continue;
		rc = scaleexpr_parse(&e, good[i].text, err, sizeof(err));
		ok(rc == 0, "accepted: '%s'%s%s", good[i].text,
		    rc == 0 ? "" : " -- ", rc == 0 ? "" : err);
		if (rc != 0)
			continue;
		scaleexpr_format(&e, buf, sizeof(buf));
		ok(strcmp(buf, good[i].canon) == 0, "  canonical '%s'", buf);
		is_int(e.for_ms, good[i].for_ms, "  for_ms");
		ok(scaleexpr_parse(&e2, buf, err, sizeof(err)) == 0 &&
		    scaleexpr_format(&e2, buf2, sizeof(buf2)) > 0 &&
		    strcmp(buf, buf2) == 0 && e2.for_ms == e.for_ms &&
		    e2.used == e.used, "  the canonical text parses to itself");
	}
	scaleexpr_parse(&e, "ttfb_p95 > 1ms and load_avg < 5 or ttfb_p95 < 1s",
	    err, sizeof(err));
	ok(e.used == (1u << SCALE_TTFB_P95 | 1u << SCALE_LOAD_AVG),
	    "used: the signals read, once each");
	rc = scaleexpr_format(&e, buf, 8);
	ok(rc == (int)strlen("ttfb_p95 > 1ms and load_avg < 5 or "
	    "ttfb_p95 < 1s") && strlen(buf) == 7,
	    "format truncates and returns the length it needed");
}

/* Refused: text, column, a piece of the message. */
static const struct {
	const char	*text;
	int		 col;
	const char	*msg;
} bad[] = {
	{ "", 1, "empty expression" },
	{ "   ", 4, "empty expression" },
	{ "ttfb_p95 > 200", 12, "'ttfb_p95' is a time: the value needs a "
	  "unit (us, ms, s, m)" },
	{ "ttfb_p96 > 200ms", 1, "unknown signal 'ttfb_p96' (percentiles "
	  "are p50, p95, p99)" },
	{ "latency > 200ms", 1, "unknown signal 'latency'" },
	{ "ttfb_p95 = 200ms", 10, "'=' is not an operator" },
	{ "ttfb_p95 ! 200ms", 10, "'!' is not an operator" },
	{ "ttfb_p95 200ms", 10, "expected an operator" },
	{ "ttfb_p95 >", 11, "expected a number after the operator, found "
	  "the end" },
	{ "ttfb_p95 > 200 ms", 12, "needs a unit" },
	{ "ttfb_p95 > 200ms ms", 18, "expected 'and', 'or', 'for' or the "
	  "end, found a name" },
	{ "ttfb_p95 > 200xs", 15, "unknown unit 'xs' (us, ms, s, m, %)" },
	{ "ttfb_p95 > 20%", 12, "'ttfb_p95' is not a percentage" },
	{ "sessions > 2ms", 12, "'sessions' is a count: no time unit" },
	{ "load_avg > 2s", 12, "'load_avg' is a percentage: no time unit" },
	{ "load_avg > 101%", 12, "a percentage is at most 100" },
	{ "sessions > 1.", 13, "a digit must follow '.'" },
	{ "sessions > -1", 12, "unexpected '-'" },
	{ "sessions > 10000000000", 12, "number above 1000000000" },
	{ "sessions > 1 for 30", 18, "a 'for' duration needs a unit" },
	{ "sessions > 1 for 30us", 18, "a 'for' duration needs a unit" },
	{ "sessions > 1 for", 17, "expected a duration after 'for'" },
	{ "sessions > 1 for 61m", 18, "'for' is at most 1 hour" },
	{ "sessions > 1 for 1s for 2s", 21, "expected the end after the 'for' "
	  "duration" },
	{ "(sessions > 1 for 1s)", 15, "expected ')' to close the '(' of "
	  "column 1, found 'for'" },
	{ "(sessions > 1", 14, "expected ')' to close the '(' of column 1, "
	  "found the end" },
	{ "sessions > 1)", 13, "expected 'and', 'or', 'for' or the end, "
	  "found ')'" },
	{ "sessions > 1 and", 17, "expected a signal name, 'not' or '(', "
	  "found the end" },
	{ "and sessions > 1", 1, "expected a signal name, 'not' or '(', "
	  "found 'and'" },
	{ "sessions > 1 or or", 17, "found 'or'" },
	{ "Sessions > 1", 1, "names and keywords are lower case" },
	{ "sessions > 1 AND up_servers < 2", 14, "names and keywords are "
	  "lower case" },
	{ "sessions > 1 && up_servers < 2", 14, "unexpected '&'" },
	{ "sessions\x01 > 1", 9, "unexpected byte 0x01" },
	{ "sessions > 1 or ((((((((((((((((sessions > 1))))))))))))))))", 33,
	  "nested deeper than 16" },
	{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa > 1", 1, "name longer than 32" },
	{ "sessions > 000000000000000000000000000000001", 12,
	  "number longer than 32" },
	{ "up_servers < 1 for 1s", 0, NULL },	/* (sanity: accepted) */
};

/* text with bytes outside printable ASCII as \xNN: TAP (and the JUnit
 * XML meson makes of it) must stay printable. */
static const char *
shown(const char *text)
{
	static char	 buf[1024];
	size_t		 i, n = 0;

	for (i = 0; text[i] != '\0' && n + 5 < sizeof(buf); i++) {
		if ((unsigned char)text[i] >= 0x20 &&
		    (unsigned char)text[i] < 0x7f)
			buf[n++] = text[i];
		else
			n += (size_t)snprintf(buf + n, sizeof(buf) - n,
			    "\\x%02x", (unsigned char)text[i]);
	}
	buf[n] = '\0';
	return buf;
}

static void
test_bad(void)
{
	struct scaleexpr	 e;
	char			 err[SCALEEXPR_ERR_MAX], want[64], big[4200];
	size_t			 i;
	int			 rc;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		rc = scaleexpr_parse(&e, bad[i].text, err, sizeof(err));
		if (bad[i].msg == NULL) {
			ok(rc == 0, "accepted: '%s'", bad[i].text);
			continue;
		}
		snprintf(want, sizeof(want), "column %d: ", bad[i].col);
		ok(rc == -1 && strncmp(err, want, strlen(want)) == 0 &&
		    strstr(err, bad[i].msg) != NULL, "refused '%s': %s",
		    shown(bad[i].text), rc == -1 ? err : "(accepted)");
	}

	/* 32 comparisons need 63 nodes: the limit exactly. */
	big[0] = '\0';
	for (i = 0; i < 32; i++)
		strcat(big, i == 0 ? "queued > 1" : " or queued > 1");
	ok(strlen(big) <= SCALEEXPR_TEXT_MAX &&
	    scaleexpr_parse(&e, big, err, sizeof(err)) == 0 &&
	    e.nnodes == SCALEEXPR_NODES_MAX, "32 comparisons: %d nodes",
	    e.nnodes);
	strcat(big, " or queued > 1");
	rc = scaleexpr_parse(&e, big, err, sizeof(err));
	ok(rc == -1 && strstr(err, "expression too long") != NULL,
	    "33 comparisons: %s", err);
	memset(big, ' ', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	rc = scaleexpr_parse(&e, big, err, sizeof(err));
	ok(rc == -1 && strcmp(err, "column 4097: expression longer than 4096 "
	    "bytes") == 0, "over 4096 bytes: %s", err);
	rc = scaleexpr_parse(&e, "", err, 8);
	ok(rc == -1 && strcmp(err, "column ") == 0,
	    "a short error buffer is truncated, still terminated");
	ok(scaleexpr_parse(&e, "", NULL, 0) == -1, "no error buffer at all");
}

static void
test_eval(void)
{
	struct scaleexpr	 e;
	double			 v[SCALE_NSIGNALS];
	char			 err[SCALEEXPR_ERR_MAX];
	int			 i;

	for (i = 0; i < SCALE_NSIGNALS; i++)
		v[i] = NAN;
#define EV(text, want, name) do {					\
	ok(scaleexpr_parse(&e, text, err, sizeof(err)) == 0 &&		\
	    scaleexpr_eval(&e, v) == (want), "%s: '%s' is %s", name,	\
	    text, (want) ? "true" : "false");				\
} while (0)
	EV("ttfb_p95 > 200ms", false, "no value");
	EV("ttfb_p95 <= 200ms", false, "no value, either way");
	EV("ttfb_p95 != 200ms", false, "no value, even !=");
	EV("not ttfb_p95 > 200ms", true, "no value, under not");
	v[SCALE_TTFB_P95] = 250;		/* ms */
	EV("ttfb_p95 > 200ms", true, "250 ms");
	EV("ttfb_p95 > 0.2s", true, "250 ms vs seconds");
	EV("ttfb_p95 > 250000us", false, "250 ms vs microseconds");
	EV("ttfb_p95 >= 250000us", true, "250 ms, >=");
	EV("ttfb_p95 == 0.25s", true, "250 ms, ==");
	EV("ttfb_p95 < 1m", true, "250 ms vs minutes");
	v[SCALE_SESSIONS_PER_SERVER] = 1.5;
	v[SCALE_UP_SERVERS] = 4;
	EV("sessions_per_server < 2", true, "1.5 sessions per server");
	EV("sessions_per_server < 2 and up_servers > 4", false, "and");
	EV("sessions_per_server < 2 and up_servers > 4 or ttfb_p95 > 1ms",
	    true, "and before or");
	EV("sessions_per_server < 2 and (up_servers > 4 or ttfb_p95 > 1s)",
	    false, "parentheses");
	EV("ttfb_p95 > 1ms or sessions_per_server < 2 and up_servers > 4",
	    true, "or after and");
	v[SCALE_LOAD_AVG] = 80;
	EV("load_avg >= 80%", true, "percent with %");
	EV("load_avg >= 80", true, "percent without %");
	EV("load_avg > 80", false, "percent, strict");
#undef EV
}

static void
test_for(void)
{
	struct scaleexpr_for	 f;
	uint64_t		 t = 1000000;

	scaleexpr_for_reset(&f);
	ok(!scaleexpr_for_update(&f, true, t, 30000), "t=0: just started");
	ok(!scaleexpr_for_update(&f, true, t + 29999, 30000),
	    "t=29.999 s: not yet");
	is_int(scaleexpr_for_held_ms(&f, t + 29999), 29999, "held 29.999 s");
	ok(scaleexpr_for_update(&f, true, t + 30000, 30000),
	    "t=30 s: held for 30 s");
	ok(scaleexpr_for_update(&f, true, t + 31000, 30000),
	    "still true while it holds");
	ok(!scaleexpr_for_update(&f, false, t + 32000, 30000),
	    "one false sample ends the streak");
	is_int(scaleexpr_for_held_ms(&f, t + 32000), 0, "held 0");
	ok(!scaleexpr_for_update(&f, true, t + 33000, 30000) &&
	    !scaleexpr_for_update(&f, true, t + 62000, 30000) &&
	    scaleexpr_for_update(&f, true, t + 63000, 30000),
	    "a new streak needs the whole duration again");
	scaleexpr_for_reset(&f);
	ok(!scaleexpr_for_update(&f, true, t + 64000, 30000),
	    "after a reset (the hook ran): starts over");
	scaleexpr_for_reset(&f);
	ok(scaleexpr_for_update(&f, true, t, 0), "for 0: the first sample");
	ok(!scaleexpr_for_update(&f, true, t - 5000, 0) ||
	    scaleexpr_for_held_ms(&f, t - 5000) == 0,
	    "a clock going back never underflows");
}

int
main(void)
{
	test_signals();
	test_good();
	test_bad();
	test_eval();
	test_for();
	return done_testing();
}
