/*
 * test_srclimit.c - the per-source table: the connection cap, the rate
 * (a burst of N, then one per 1/N s; refusals take nothing), sources
 * (IPv4, IPv4-mapped, IPv6 /64), eviction and the full bucket, and
 * threads hammering a small shared table: no source ever holds more
 * than its cap, every count returns to zero, a frozen clock admits
 * exactly the burst. Built with ThreadSanitizer in the tsan pass.
 */
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/un.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "srclimit.h"
#include "t.h"

#define SEC	1000000ULL	/* µs */

static struct sockaddr_storage
addr(const char *a)
{
	struct sockaddr_storage	 ss;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, a, &sin->sin_addr) == 1)
		sin->sin_family = AF_INET;
	else if (inet_pton(AF_INET6, a, &sin6->sin6_addr) == 1)
		sin6->sin6_family = AF_INET6;
	else
		abort();
	return ss;
}

static enum srclimit_verdict
take(struct srclimit *t, const char *a, uint64_t now)
{
	struct sockaddr_storage	 ss = addr(a);

	return srclimit_take(t, (struct sockaddr *)&ss, now);
}

/* is_int() evaluates its arguments twice: take() must run once */
#define is_v(got, want, name) do {				\
	enum srclimit_verdict v_ = (got);			\
	is_int(v_, (want), (name));				\
} while (0)

static void
release(struct srclimit *t, const char *a)
{
	struct sockaddr_storage	 ss = addr(a);

	srclimit_release(t, (struct sockaddr *)&ss);
}

static uint32_t
conns(struct srclimit *t, const char *a)
{
	struct sockaddr_storage	 ss = addr(a);

	return srclimit_conns(t, (struct sockaddr *)&ss);
}

static void
test_maxconn(void)
{
	struct srclimit		*t = srclimit_new(3, 0, 1024);
	struct sockaddr_un	 un = { .sun_family = AF_UNIX };
	int			 i, okc = 0;

	for (i = 0; i < 3; i++)
		okc += take(t, "10.0.0.1", SEC) == SRCLIMIT_OK;
	is_int(okc, 3, "maxconn 3: three sessions admitted");
	is_v(take(t, "10.0.0.1", SEC), SRCLIMIT_OVER_CONN,
	    "the fourth: over-conn");
	is_int(conns(t, "10.0.0.1"), 3, "the source holds 3");
	is_v(take(t, "10.0.0.2", SEC), SRCLIMIT_OK,
	    "another source is not affected");
	release(t, "10.0.0.1");
	is_v(take(t, "10.0.0.1", SEC), SRCLIMIT_OK,
	    "one ended: one more admitted");
	is_v(take(t, "::ffff:10.0.0.1", SEC), SRCLIMIT_OVER_CONN,
	    "the same client IPv4-mapped is the same source");
	release(t, "::ffff:10.0.0.1");
	is_int(conns(t, "10.0.0.1"), 2, "released through its mapped form");
	release(t, "10.0.0.1");
	release(t, "10.0.0.1");
	release(t, "10.0.0.1");
	release(t, "10.0.0.2");
	is_int(conns(t, "10.0.0.1"), 0, "a release too many stays at 0");

	for (i = 0; i < 3; i++)
		take(t, "2001:db8:1:2::1", SEC);
	is_v(take(t, "2001:db8:1:2:ffff:eeee:dddd:cccc", SEC),
	    SRCLIMIT_OVER_CONN, "IPv6: the same /64 is one source");
	is_v(take(t, "2001:db8:1:3::1", SEC), SRCLIMIT_OK,
	    "IPv6: the next /64 is another");
	is_v(take(t, "ff00::10.0.0.1", SEC), SRCLIMIT_OK,
	    "ff00::/64 is not confused with IPv4 keys");
	ok(srclimit_take(t, (struct sockaddr *)&un, SEC) == SRCLIMIT_OK &&
	    srclimit_conns(t, (struct sockaddr *)&un) == 0,
	    "a unix client is admitted and not counted");
	srclimit_free(t);
}

static void
test_rate(void)
{
	struct srclimit	*t = srclimit_new(0, 10, 1024);
	uint64_t	 now = 5 * SEC;
	int		 i, okc = 0;

	for (i = 0; i < 10; i++)
		okc += take(t, "10.0.0.1", now) == SRCLIMIT_OK;
	is_int(okc, 10, "rate 10/s: a burst of 10 admitted");
	is_v(take(t, "10.0.0.1", now), SRCLIMIT_OVER_RATE,
	    "the eleventh at the same instant: over-rate");
	is_v(take(t, "10.0.0.2", now), SRCLIMIT_OK,
	    "another source is not affected");
	for (i = 0; i < 1000; i++)
		take(t, "10.0.0.1", now + SEC / 20);
	is_v(take(t, "10.0.0.1", now + SEC / 10), SRCLIMIT_OK,
	    "refused attempts took nothing: one more after 100 ms");
	is_v(take(t, "10.0.0.1", now + SEC / 10 + SEC / 20),
	    SRCLIMIT_OVER_RATE, "but not a second 50 ms later");
	for (okc = 0, i = 0; i < 20; i++)
		okc += take(t, "10.0.0.1", now + 3 * SEC) == SRCLIMIT_OK;
	is_int(okc, 10, "after 3 idle seconds, the full burst again");
	/* a steady client at exactly the rate is never refused */
	for (okc = 0, i = 0; i < 100; i++)
		okc += take(t, "10.0.0.9", 100 * SEC + (uint64_t)i * SEC / 10) ==
		    SRCLIMIT_OK;
	is_int(okc, 100, "100 sessions 100 ms apart: all admitted");
	srclimit_free(t);

	t = srclimit_new(2, 100, 1024);
	take(t, "10.0.0.1", SEC);
	take(t, "10.0.0.1", SEC);
	is_v(take(t, "10.0.0.1", SEC), SRCLIMIT_OVER_CONN,
	    "both limits: the cap first");
	release(t, "10.0.0.1");
	release(t, "10.0.0.1");
	for (okc = 0, i = 0; i < 200; i++) {
		if (take(t, "10.0.0.1", SEC) == SRCLIMIT_OK) {
			okc++;
			release(t, "10.0.0.1");
		}
	}
	is_int(okc, 98, "both limits: the rest of a burst of 100");
	is_int(conns(t, "10.0.0.1"), 0, "over-rate refusals count no session");
	srclimit_free(t);
}

static void
test_evict(void)
{
	struct srclimit	*t = srclimit_new(0, 0, 8);	/* one bucket */
	char		 a[32];
	int		 i, okc = 0;

	ok(srclimit_memory(t) < 1024, "one bucket: %zu bytes",
	    srclimit_memory(t));
	for (i = 0; i < 8; i++) {
		snprintf(a, sizeof(a), "10.0.0.%d", i);
		okc += take(t, a, SEC) == SRCLIMIT_OK;
	}
	is_int(okc, 8, "8 sources holding sessions fill the bucket");
	is_v(take(t, "10.0.1.1", SEC), SRCLIMIT_FULL,
	    "a ninth source: full, not counted");
	release(t, "10.0.0.3");
	is_v(take(t, "10.0.1.1", SEC), SRCLIMIT_OK,
	    "one source idle: its slot goes to the new one");
	is_int(conns(t, "10.0.0.3"), 0, "the idle source is forgotten");
	is_int(srclimit_evictions(t), 0, "no rate history was lost");
	srclimit_free(t);

	t = srclimit_new(0, 10, 8);
	for (i = 0; i < 8; i++) {
		snprintf(a, sizeof(a), "10.0.0.%d", i);
		take(t, a, SEC + (uint64_t)i * 1000);	/* 0 first, 7 last */
		release(t, a);
	}
	is_v(take(t, "10.0.1.1", SEC + 10000), SRCLIMIT_OK,
	    "rate: 8 idle sources with history, a new one is admitted");
	is_int(srclimit_evictions(t), 1, "one history lost (counted)");
	for (okc = 0, i = 0; i < 12; i++)
		okc += take(t, "10.0.0.0", SEC + 10000) == SRCLIMIT_OK;
	is_int(okc, 10, "the oldest history was the one lost: a fresh burst");
	for (okc = 0, i = 0; i < 12; i++)
		okc += take(t, "10.0.0.7", SEC + 10000) == SRCLIMIT_OK;
	is_int(okc, 9, "the newest kept its history: 9 of its burst left");
	srclimit_free(t);
}

static void
test_sizes(void)
{
	struct srclimit	*t;

	is_int(srclimit_capacity(0), SRCLIMIT_CAP_MIN, "capacity floor");
	is_int(srclimit_capacity(10000), 32768,
	    "capacity for maxconn 10000: 32768");
	t = srclimit_new(10, 10, (size_t)1 << 20);
	ok(t != NULL, "a table of 1 048 576 slots");
	if (t != NULL)
		printf("# 1 048 576 slots: %zu bytes (%.1f MiB)\n",
		    srclimit_memory(t), srclimit_memory(t) / 1048576.0);
	ok(t != NULL && srclimit_memory(t) < 26 * 1048576,
	    "1M slots take less than 26 MiB");
	srclimit_free(t);
	errno = 0;
	ok(srclimit_new(0, SRCLIMIT_RATE_MAX + 1, 8) == NULL &&
	    errno == EINVAL, "rate above 1 000 000/s: EINVAL");
	srclimit_free(NULL);
}

/* ---- threads ------------------------------------------------------ */

#define NTHREADS	4
#define NSOURCES	100
#define MAXCONN		4
#define ITER		200000
#define HOLD		16

static struct srclimit		*shared;
static _Atomic int		 held[NSOURCES];
static _Atomic int		 violations;
static _Atomic uint64_t		 admitted, full;

static void
src_addr(int i, struct sockaddr_storage *ss)
{
	char	 a[40];

	if (i % 2)
		snprintf(a, sizeof(a), "10.1.%d.%d", i / 256, i % 256);
	else
		snprintf(a, sizeof(a), "2001:db8:%x::%x", i, i);
	*ss = addr(a);
}

static void *
hammer(void *arg)
{
	struct sockaddr_storage	 ss;
	uint64_t		 r = (uint64_t)(uintptr_t)arg * 7919 + 1;
	int			 mine[HOLD], nmine = 0, i, k, s;

	for (i = 0; i < ITER; i++) {
		r ^= r << 13;
		r ^= r >> 7;
		r ^= r << 17;
		if (nmine == HOLD || (nmine > 0 && (r & 1))) {
			k = (int)((r >> 8) % (uint64_t)nmine);
			s = mine[k];
			mine[k] = mine[--nmine];
			atomic_fetch_sub(&held[s], 1);
			src_addr(s, &ss);
			srclimit_release(shared, (struct sockaddr *)&ss);
			continue;
		}
		s = (int)((r >> 16) % NSOURCES);
		src_addr(s, &ss);
		switch (srclimit_take(shared, (struct sockaddr *)&ss, SEC)) {
		case SRCLIMIT_OK:
			if (atomic_fetch_add(&held[s], 1) + 1 > MAXCONN)
				atomic_fetch_add(&violations, 1);
			atomic_fetch_add(&admitted, 1);
			mine[nmine++] = s;
			break;
		case SRCLIMIT_FULL:
			atomic_fetch_add(&full, 1);
			break;
		default:
			break;
		}
	}
	while (nmine > 0) {
		s = mine[--nmine];
		atomic_fetch_sub(&held[s], 1);
		src_addr(s, &ss);
		srclimit_release(shared, (struct sockaddr *)&ss);
	}
	return NULL;
}

static void
test_threads(void)
{
	struct sockaddr_storage	 ss;
	pthread_t		 th[NTHREADS];
	int			 i, left = 0;

	/* 64 slots for 100 sources: lookups, inserts and reuse all race */
	shared = srclimit_new(MAXCONN, 0, 64);
	for (i = 0; i < NTHREADS; i++)
		pthread_create(&th[i], NULL, hammer, (void *)(uintptr_t)i);
	for (i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
	for (i = 0; i < NSOURCES; i++) {
		src_addr(i, &ss);
		left += (int)srclimit_conns(shared, (struct sockaddr *)&ss);
	}
	printf("# %d threads: %llu admitted, %llu full\n", NTHREADS,
	    (unsigned long long)admitted, (unsigned long long)full);
	is_int(violations, 0, "threads: no source ever held more than 4");
	ok(admitted > ITER / 4, "threads: sessions were admitted");
	is_int(left, 0, "threads: every count is back to 0");
	srclimit_free(shared);
}

static _Atomic int	 rate_ok;

static void *
burst(void *arg)
{
	struct sockaddr_storage	 ss = addr("2001:db8::1");
	int			 i;

	(void)arg;
	for (i = 0; i < 1000; i++) {
		if (srclimit_take(shared, (struct sockaddr *)&ss, 7 * SEC) ==
		    SRCLIMIT_OK) {
			atomic_fetch_add(&rate_ok, 1);
			srclimit_release(shared, (struct sockaddr *)&ss);
		}
	}
	return NULL;
}

static void
test_threads_rate(void)
{
	pthread_t	 th[NTHREADS];
	int		 i;

	shared = srclimit_new(0, 100, 1024);
	for (i = 0; i < NTHREADS; i++)
		pthread_create(&th[i], NULL, burst, NULL);
	for (i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
	is_int(rate_ok, 100,
	    "threads, frozen clock, rate 100/s: exactly 100 of 4000 admitted");
	srclimit_free(shared);
}

static double
now_s(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The cost of one take and release, one thread, 1 000 known sources. */
static void
test_cost(void)
{
	struct sockaddr_storage	 ss[1000];
	struct srclimit		*t = srclimit_new(100, 1000, 32768);
	double			 t0, ns;
	size_t			 k, N = 1000000;
	int			 i;

	for (i = 0; i < 1000; i++)
		src_addr(i, &ss[i]);
	t0 = now_s();
	for (k = 0; k < N; k++) {
		if (srclimit_take(t, (struct sockaddr *)&ss[k % 1000],
		    k) == SRCLIMIT_OK)
			srclimit_release(t, (struct sockaddr *)&ss[k % 1000]);
	}
	ns = (now_s() - t0) * 1e9 / (double)N;
	printf("# take + release: %.0f ns per session\n", ns);
	/* a bound for a runaway only: sanitizers and a busy machine slow it */
	ok(ns < 50000, "take + release cost %.0f ns (< 50 us)", ns);
	srclimit_free(t);
}

int
main(void)
{
	test_maxconn();
	test_rate();
	test_evict();
	test_sizes();
	test_threads();
	test_threads_rate();
	test_cost();
	return done_testing();
}
