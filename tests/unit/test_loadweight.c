/*
 * test_loadweight.c - effective weights: the load function and its floor,
 * stale and absurd reports, the slow start ramp, and the properties that
 * matter to a pool (never zeroed, monotone, shares follow the reports).
 */
#include <stdint.h>
#include <stdio.h>

#include "loadweight.h"
#include "t.h"

static struct loadweight_report
rep(int load, uint64_t age_ms)
{
	struct loadweight_report	 r = { true, load, age_ms, 1000 };

	return r;
}

static void
test_load(void)
{
	struct loadweight_report	 r;

	r = rep(0, 0);
	is_int(loadweight_effective(1, &r, 0, 0), 16, "weight 1, load 0: 16");
	is_int(loadweight_effective(10, NULL, 0, 0), 160, "no report: full");
	r = rep(40, 500);
	is_int(loadweight_load_pct(&r), 60, "load 40 -> 60 %");
	is_int(loadweight_effective(10, &r, 0, 0), 96, "weight 10, load 40: 96");
	r = rep(90, 0);
	is_int(loadweight_load_pct(&r), 10, "load 90 -> the 10 % floor");
	r = rep(100, 0);
	is_int(loadweight_load_pct(&r), 10, "load 100 -> the 10 % floor");
	is_int(loadweight_effective(1, &r, 0, 0), 2, "weight 1, load 100: "
	    "ceil(1.6) = 2");
	is_int(loadweight_effective(256, &r, 0, 0), 410, "weight 256, load "
	    "100: ceil(409.6)");
	r = rep(0, 0);
	is_int(loadweight_effective(256, &r, 0, 0), LOADWEIGHT_MAX,
	    "weight 256, idle: the maximum");
	is_int(loadweight_effective(999, &r, 0, 0), LOADWEIGHT_MAX,
	    "weight above 256 is clamped");
	is_int(loadweight_effective(0, &r, 0, 0), 0, "weight 0 stays 0");
	is_int(loadweight_effective(-3, &r, 0, 0), 0, "negative weight: 0");

	r = rep(101, 0);
	ok(!loadweight_report_usable(&r) && loadweight_load_pct(&r) == 100,
	    "load 101 is absurd: ignored");
	r = rep(-1, 0);
	ok(!loadweight_report_usable(&r), "load -1 is absurd: ignored");
	r = rep(80, 3000);
	ok(loadweight_report_usable(&r), "3 intervals old: still used");
	r = rep(80, 3001);
	ok(!loadweight_report_usable(&r) && loadweight_effective(5, &r, 0,
	    0) == 80, "older than 3 intervals: stale, full weight");
	r = rep(80, 2500);
	r.interval_ms = 0;
	ok(loadweight_report_usable(&r), "unknown interval: 1 s assumed");
	r.age_ms = 3001;
	ok(!loadweight_report_usable(&r), "unknown interval: stale after 3 s");
	r = rep(80, 0);
	r.have = false;
	ok(!loadweight_report_usable(&r), "no report yet");
}

static void
test_ramp(void)
{
	struct loadweight_report	 r = rep(0, 0);
	uint64_t			 t;
	uint32_t			 prev = 0, w;
	bool				 monotone = true;

	is_int(loadweight_ramp_permille(0, 0), 1000, "no slow start: full");
	is_int(loadweight_ramp_permille(0, 60000), 50, "t=0: 5 %");
	is_int(loadweight_ramp_permille(1000, 60000), 50, "t=1 s of 60: "
	    "still 5 % (1.7 % is below the start)");
	is_int(loadweight_ramp_permille(30000, 60000), 500, "half way: 50 %");
	is_int(loadweight_ramp_permille(59999, 60000), 999, "just before "
	    "the end");
	is_int(loadweight_ramp_permille(60000, 60000), 1000, "the end: 100 %");
	is_int(loadweight_ramp_permille(UINT64_MAX, 60000), 1000,
	    "long after: 100 %");
	is_int(loadweight_effective(1, &r, 0, 60000), 1,
	    "weight 1 at the start: 1/16 (6 %)");
	is_int(loadweight_effective(10, &r, 0, 60000), 8,
	    "weight 10 at the start: 8/160 (5 %)");
	is_int(loadweight_effective(10, &r, 30000, 60000), 80,
	    "weight 10 half way: 80/160");
	for (t = 0; t <= 61000; t += 250) {
		w = loadweight_effective(7, &r, t, 60000);
		if (w < prev)
			monotone = false;
		prev = w;
	}
	ok(monotone && prev == 7 * LOADWEIGHT_SCALE,
	    "the ramp only grows, and ends at the full weight");
	r = rep(50, 0);
	is_int(loadweight_effective(10, &r, 30000, 60000), 40,
	    "load 50 and half way: both apply (40/160)");
}

static void
test_pool(void)
{
	struct loadweight_report	 r;
	int				 load, weight;
	uint32_t			 w, prev;
	bool				 never0 = true, monotone = true;

	for (weight = 1; weight <= 256; weight++) {
		prev = UINT32_MAX;
		for (load = -5; load <= 105; load++) {
			r = rep(load, 0);
			w = loadweight_effective(weight, &r, 0, 30000);
			if (w == 0)
				never0 = false;
			if (load >= 0 && load <= 100 && w > prev)
				monotone = false;
			if (load >= 0 && load <= 100)
				prev = w;
		}
	}
	ok(never0, "no weight, load or slow start gives 0");
	ok(monotone, "more load never gives more weight");

	/* Two servers of weight 1: idle and at 75 % load: 16 vs 4 = 80/20. */
	r = rep(0, 0);
	w = loadweight_effective(1, &r, 0, 0);
	r = rep(75, 0);
	prev = loadweight_effective(1, &r, 0, 0);
	ok(w == 16 && prev == 4, "idle vs 75 %%: shares 16:4 (80 %% / 20 %%)");
}

int
main(void)
{
	test_load();
	test_ramp();
	test_pool();
	return done_testing();
}
