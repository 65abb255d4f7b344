/*
 * test_loadsrc.c - shoal-announce's load and weight sources: a
 * --load-cmd's output, a --weight-file, and the host's CPU use from
 * /proc/stat.
 */
#include <string.h>

#include "loadsrc.h"
#include "t.h"

static int
load_of(const char *s)
{
	const char	*why = NULL;
	int		 v = -2;

	if (loadsrc_parse_load(s, strlen(s), &v, &why) == -1)
		return why != NULL ? -1 : -3;
	return v;
}

static int
weight_of(const char *s)
{
	const char	*why = NULL;
	int		 v = -2;

	if (loadsrc_parse_weight(s, strlen(s), &v, &why) == -1)
		return why != NULL ? -1 : -3;
	return v;
}

static void
test_load(void)
{
	is_int(load_of("37"), 37, "37");
	is_int(load_of("37\n"), 37, "37 and a newline");
	is_int(load_of("  37  \nanything else\n"), 37, "first line, blanks");
	is_int(load_of("37%"), 37, "37%");
	is_int(load_of("37.4"), 37, "37.4 rounds down");
	is_int(load_of("37.5"), 38, "37.5 rounds up");
	is_int(load_of("99.5"), 100, "99.5 rounds to 100");
	is_int(load_of("0"), 0, "0");
	is_int(load_of("100"), 100, "100");
	is_int(load_of("100.0"), 100, "100.0");
	is_int(load_of("100.4"), -1, "100.4 is above 100");
	is_int(load_of("101"), -1, "101 is above 100");
	is_int(load_of("1000"), -1, "1000");
	is_int(load_of("-1"), -1, "negative");
	is_int(load_of(""), -1, "no output");
	is_int(load_of("\n42\n"), -1, "empty first line");
	is_int(load_of("high"), -1, "a word");
	is_int(load_of("42 43"), -1, "two numbers");
	is_int(load_of("4.2.1"), -1, "two points");
	is_int(load_of("42."), -1, "a point and no digit");
	is_int(load_of(".5"), -1, "no digit before the point");
	is_int(load_of("0042"), -1, "more than three digits");
	ok(loadsrc_parse_load("55", 1, &(int){ 0 }, &(const char *){ NULL })
	    == 0, "only len bytes are read");
}

static void
test_weight(void)
{
	is_int(weight_of("0"), 0, "0");
	is_int(weight_of("256\n"), 256, "256");
	is_int(weight_of(" 7 \n9\n"), 7, "first line, blanks");
	is_int(weight_of("257"), -1, "257");
	is_int(weight_of("99999999999999999999"), -1, "huge");
	is_int(weight_of("3.5"), -1, "a fraction");
	is_int(weight_of("-1"), -1, "negative");
	is_int(weight_of(""), -1, "empty");
}

static void
test_cpu(void)
{
	struct loadsrc_cpu a, b;

	ok(loadsrc_cpu_parse("cpu  100 0 50 800 50 0 0 0 0 0", &a) == 0,
	    "a /proc/stat cpu line");
	is_int((int)a.busy, 150, "busy: user + nice + system + irqs + steal");
	is_int((int)a.total, 1000, "total: busy + idle + iowait");
	ok(loadsrc_cpu_parse("cpu  400 0 150 1150 100 0 0 0 0 0", &b) == 0,
	    "a later sample");
	is_int(loadsrc_cpu_busy(&a, &b), 50, "350 busy of 700: 50 %");
	is_int(loadsrc_cpu_busy(&a, &a), -1, "no time passed: no value");
	is_int(loadsrc_cpu_busy(&b, &a), -1, "counters went backwards");
	ok(loadsrc_cpu_parse("cpu0 1 2 3 4", &a) == -1, "a per-CPU line is "
	    "not the total");
	ok(loadsrc_cpu_parse("intr 1 2 3", &a) == -1, "another line");
	ok(loadsrc_cpu_read(&a) == 0 && a.total >= a.busy && a.total > 0,
	    "this host's /proc/stat");
}

int
main(void)
{
	test_load();
	test_weight();
	test_cpu();
	return done_testing();
}
