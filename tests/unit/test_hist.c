/*
 * test_hist.c - latency histograms: bucket bounds, quantiles against
 * known distributions, the Prometheus text, the recent window, exact
 * counts under concurrent writers, and the measured cost of an update.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hist.h"
#include "sbuf.h"
#include "t.h"

static bool
near(double a, double b, double tol)
{
	return fabs(a - b) <= tol;
}

static void
test_bounds(void)
{
	unsigned	 i;
	bool		 rising = true;

	for (i = 1; i < HIST_NBOUNDS; i++)
		if (hist_bounds_us[i] <= hist_bounds_us[i - 1])
			rising = false;
	ok(rising, "bounds strictly increase");
	is_int(hist_bounds_us[0], 50, "first bound 50 us");
	is_int(hist_bounds_us[HIST_NBOUNDS - 1], 60000000, "last bound 60 s");
	is_int(hist_bucket(0), 0, "0 us -> first bucket");
	is_int(hist_bucket(50), 0, "50 us -> first bucket (le is inclusive)");
	is_int(hist_bucket(51), 1, "51 us -> second bucket");
	is_int(hist_bucket(200000), 11, "200 ms -> the 200 ms bucket");
	is_int(hist_bucket(200001), 12, "200.001 ms -> the 500 ms bucket");
	is_int(hist_bucket(60000000), HIST_NBOUNDS - 1, "60 s -> last finite");
	is_int(hist_bucket(60000001), HIST_NBOUNDS, "60.000001 s -> +Inf");
	is_int(hist_bucket(UINT64_MAX), HIST_NBOUNDS, "UINT64_MAX -> +Inf");
}

static void
test_quantiles(void)
{
	struct hist		 h;
	struct hist_counts	 c;
	unsigned		 i;

	hist_init(&h);
	hist_read(&h, &c);
	ok(c.count == 0 && hist_quantile(&c, 0.5) == -1,
	    "empty: no quantile (-1), not 0");

	for (i = 0; i < 100; i++)
		hist_add(&h, 150000);		/* 150 ms */
	hist_read(&h, &c);
	is_int(c.count, 100, "count");
	is_int(c.sum_us, 15000000, "sum");
	ok(near(hist_quantile(&c, 0.5), 150000, 1),
	    "all in (100, 200] ms: p50 = 150 ms (got %.0f)",
	    hist_quantile(&c, 0.5));
	ok(near(hist_quantile(&c, 0.95), 195000, 1),
	    "p95 = 195 ms (linear in the bucket; got %.0f)",
	    hist_quantile(&c, 0.95));

	/* 90 fast, 10 slow: p50 among the fast, p95 and p99 among the slow. */
	hist_init(&h);
	for (i = 0; i < 90; i++)
		hist_add(&h, 800);		/* (500, 1000] us */
	for (i = 0; i < 10; i++)
		hist_add(&h, 300000);		/* (200, 500] ms */
	hist_read(&h, &c);
	ok(hist_quantile(&c, 0.5) > 500 && hist_quantile(&c, 0.5) <= 1000,
	    "90/10 mix: p50 in the fast bucket (%.0f us)",
	    hist_quantile(&c, 0.5));
	ok(near(hist_quantile(&c, 0.95), 350000, 1),
	    "90/10 mix: p95 = 200 + 300 * 5/10 ms (%.0f us)",
	    hist_quantile(&c, 0.95));
	ok(near(hist_quantile(&c, 0.99), 470000, 1),
	    "90/10 mix: p99 = 200 + 300 * 9/10 ms (%.0f us)",
	    hist_quantile(&c, 0.99));
	ok(near(hist_quantile(&c, 1), 500000, 1), "p100 = the upper bound");
	ok(near(hist_quantile(&c, 0), 500, 1), "p0 = lower bound of the "
	    "first non-empty bucket");
	ok(hist_quantile(&c, NAN) == hist_quantile(&c, 0) &&
	    hist_quantile(&c, 7) == hist_quantile(&c, 1),
	    "q outside [0, 1] is clamped");

	hist_init(&h);
	hist_add(&h, 3600000000ULL);		/* an hour */
	hist_read(&h, &c);
	ok(near(hist_quantile(&c, 0.5), 60000000, 0),
	    "+Inf bucket: the last finite bound (60 s)");

	/* Error bound: a uniform spread is recovered to within a bucket. */
	hist_init(&h);
	for (i = 1; i <= 1000; i++)
		hist_add(&h, i * 100);		/* 0.1 .. 100 ms */
	hist_read(&h, &c);
	ok(hist_quantile(&c, 0.5) > 20000 && hist_quantile(&c, 0.5) <= 50000 &&
	    near(hist_quantile(&c, 0.5), 50000, 30000),
	    "uniform 0.1-100 ms: p50 %.0f us within its bucket (20, 50] ms",
	    hist_quantile(&c, 0.5));
}

static void
test_prom(void)
{
	struct hist		 h;
	struct hist_counts	 c;
	struct sbuf		 b;

	hist_init(&h);
	hist_add(&h, 40);
	hist_add(&h, 1500);
	hist_add(&h, 1500);
	hist_add(&h, 70000000);
	hist_read(&h, &c);
	sbuf_init(&b);
	hist_prom(&b, "shoal_server_ttfb_seconds",
	    "backend=\"app\",server=\"s1\"", &c);
	ok(!sbuf_failed(&b), "prom: built");
	ok(strstr(b.data, "shoal_server_ttfb_seconds_bucket{backend=\"app\","
	    "server=\"s1\",le=\"5e-05\"} 1\n") != NULL, "prom: first bucket");
	ok(strstr(b.data, "le=\"0.001\"} 1\n") != NULL &&
	    strstr(b.data, "le=\"0.002\"} 3\n") != NULL &&
	    strstr(b.data, "le=\"60\"} 3\n") != NULL,
	    "prom: buckets are cumulative");
	ok(strstr(b.data, "le=\"+Inf\"} 4\n") != NULL, "prom: +Inf = count");
	ok(strstr(b.data, "shoal_server_ttfb_seconds_sum{backend=\"app\","
	    "server=\"s1\"} 70.003040\n") != NULL, "prom: sum in seconds");
	ok(strstr(b.data, "shoal_server_ttfb_seconds_count{backend=\"app\","
	    "server=\"s1\"} 4\n") != NULL, "prom: count");
	sbuf_reset(&b);
	hist_prom(&b, "x", "", &c);
	ok(strstr(b.data, "x_bucket{le=\"+Inf\"} 4\nx_sum 70.003040\n"
	    "x_count 4\n") != NULL, "prom: no labels");
	sbuf_free(&b);
}

static void
test_window(void)
{
	struct hist		 h;
	struct hist_window	 w;
	struct hist_counts	 c;
	unsigned		 i;

	hist_init(&h);
	hist_window_init(&w);
	hist_window_recent(&w, &h, &c);
	is_int(c.count, 0, "window: empty");
	/* A slow minute, then a fast one: the window forgets the slow. */
	for (i = 0; i < HIST_WINDOW_SLOTS; i++) {
		hist_add(&h, 400000);
		hist_window_tick(&w, &h);
	}
	hist_window_recent(&w, &h, &c);
	is_int(c.count, HIST_WINDOW_SLOTS - 1, "window: after a full window "
	    "of ticks, the oldest snapshot is subtracted");
	for (i = 0; i < HIST_WINDOW_SLOTS; i++) {
		hist_add(&h, 1000);
		hist_add(&h, 1000);
		hist_window_tick(&w, &h);
	}
	hist_window_recent(&w, &h, &c);
	is_int(c.count, 2 * (HIST_WINDOW_SLOTS - 1),
	    "window: only the last SLOTS-1 whole ticks remain");
	ok(hist_quantile(&c, 0.99) <= 1000, "window: p99 is fast again "
	    "(%.0f us)", hist_quantile(&c, 0.99));
	hist_read(&h, &c);
	ok(hist_quantile(&c, 0.99) > 200000, "all-time p99 still slow");

	hist_init(&h);
	hist_window_init(&w);
	for (i = 0; i < 3; i++) {
		hist_add(&h, 10);
		hist_window_tick(&w, &h);
	}
	hist_add(&h, 10);
	hist_window_recent(&w, &h, &c);
	is_int(c.count, 4, "window younger than 60 s: everything counts");
}

#define THREADS		4
#define PER_THREAD	500000

static struct hist	 shared;

static void *
adder(void *arg)
{
	uint64_t	 base = (uint64_t)(uintptr_t)arg, i;

	for (i = 0; i < PER_THREAD; i++)
		hist_add(&shared, (base * 7919 + i * 104729) % 90000000);
	return NULL;
}

static void
test_threads(void)
{
	pthread_t		 t[THREADS];
	struct hist_counts	 c, mid;
	uint64_t		 want_sum = 0, base, i;
	unsigned		 k;
	bool			 monotone = true;

	hist_init(&shared);
	for (k = 0; k < THREADS; k++)
		pthread_create(&t[k], NULL, adder, (void *)(uintptr_t)k);
	/* The reader runs concurrently, as the control loop does. */
	for (i = 0; i < 200; i++) {
		hist_read(&shared, &mid);
		hist_read(&shared, &c);
		if (c.count < mid.count)
			monotone = false;
	}
	for (k = 0; k < THREADS; k++)
		pthread_join(t[k], NULL);
	for (base = 0; base < THREADS; base++)
		for (i = 0; i < PER_THREAD; i++)
			want_sum += (base * 7919 + i * 104729) % 90000000;
	hist_read(&shared, &c);
	is_int(c.count, (uint64_t)THREADS * PER_THREAD,
	    "4 writer threads: no update lost");
	ok(c.sum_us == want_sum, "4 writer threads: exact sum");
	ok(monotone, "a concurrent reader never sees the count go back");
}

static double
now_ns(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

#define BENCH_N		5000000

static void *
bench_adder(void *arg)
{
	uint64_t	 i, v = (uint64_t)(uintptr_t)arg;

	for (i = 0; i < BENCH_N; i++) {
		v = v * 6364136223846793005ULL + 1442695040888963407ULL;
		hist_add(&shared, (v >> 40) & 0x3fffff);	/* 0 .. 4 s */
	}
	return NULL;
}

/*
 * The price of one update: one thread alone (the usual case, a server's
 * histogram touched by one session at a time), and two threads writing
 * the same histogram at full speed (the worst case: its cache lines bounce
 * between cores). The loop's own cost (an LCG step) is measured and
 * subtracted. Printed as TAP comments; the bound asserted is loose, so
 * that a loaded or sanitized machine does not fail it.
 */
static void
test_cost(void)
{
	pthread_t	 t[2];
	double		 t0, base, one, two;
	volatile uint64_t sink = 0;
	uint64_t	 i, v = 1;

	hist_init(&shared);
	t0 = now_ns();
	for (i = 0; i < BENCH_N; i++) {
		v = v * 6364136223846793005ULL + 1442695040888963407ULL;
		sink += (v >> 40) & 0x3fffff;
	}
	base = (now_ns() - t0) / BENCH_N;
	t0 = now_ns();
	bench_adder((void *)1);
	one = (now_ns() - t0) / BENCH_N - base;
	t0 = now_ns();
	pthread_create(&t[0], NULL, bench_adder, (void *)2);
	pthread_create(&t[1], NULL, bench_adder, (void *)3);
	pthread_join(t[0], NULL);
	pthread_join(t[1], NULL);
	two = (now_ns() - t0) / BENCH_N - base;
	printf("# hist_add: %.1f ns per update, one writer (loop %.1f ns "
	    "subtracted)\n", one, base);
	printf("# hist_add: %.1f ns per update, each of two writers on one "
	    "histogram\n", two);
	ok(one < 2000, "hist_add costs under 2 us even here (%.1f ns)", one);
	(void)sink;
}

int
main(int argc, char **argv)
{
	test_bounds();
	test_quantiles();
	test_prom();
	test_window();
	test_threads();
	if (getenv("SHOAL_TEST_NO_BENCH") == NULL)
		test_cost();
	(void)argc;
	(void)argv;
	return done_testing();
}
