/*
 * test_server.c - the server table: publishing pools, refcounts, and QSBR
 * reclamation with reader threads picking while the table changes.
 *
 * A retired pool holds a reference on every server it lists, so a server
 * removed from the table shows by its refcount whether the pools that
 * listed it were freed. Run under ThreadSanitizer too (tests/run.sh).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "balance.h"
#include "server.h"
#include "t.h"

#define READERS		4
#define RUN_MS		400	/* how long the concurrent phase lasts */
#define MAX_SERVERS	16

static int nwakes;

static void
count_wake(void)
{
	nwakes++;
}

static void
addr4(struct sockaddr_in *sin, int i)
{
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	sin->sin_port = htons(80);
	sin->sin_addr.s_addr = htonl(0x0a000000u + (uint32_t)i);
}

static struct backend *
mkbackend(int n)
{
	struct conf_backend	 cb;
	struct backend		*be;

	memset(&cb, 0, sizeof(cb));
	snprintf(cb.name, sizeof(cb.name), "app");
	cb.balance = BALANCE_ROUNDROBIN;
	cb.check = CHECK_NONE;
	cb.retries = 1;
	if ((be = backend_new(&cb)) == NULL)
		abort();
	for (int i = 1; i <= n; i++) {
		struct sockaddr_in	sin;
		char			name[16];

		snprintf(name, sizeof(name), "s%d", i);
		addr4(&sin, i);
		if (server_add(be, name, (struct sockaddr *)&sin, sizeof(sin),
		    1, 0, false, SRC_STATIC) == NULL)
			abort();
	}
	if (server_publish(be) == -1)
		abort();
	return be;
}

static int
refs(struct server *s)
{
	return atomic_load(&s->refs);
}

/* Publishing: the pool lists exactly the eligible servers. */
static void
test_publish(void)
{
	struct backend	*be = mkbackend(3);
	struct server	*s2 = server_find(be, "s2");
	struct pool	*p;

	p = backend_pool(be);
	ok(p != NULL && p->primary.n == 3 && p->nall == 3,
	    "publish: a pool of the 3 servers");
	is_int(refs(s2), 2, "a listed server: the table's and the pool's ref");
	server_set_admin(s2, ADM_MAINT, "test");	/* republishes */
	p = backend_pool(be);
	ok(p->primary.n == 2 && p->primary.srv[0] != s2 &&
	    p->primary.srv[1] != s2, "maint leaves the next pool at once");
	qsbr_drain();
	is_int(refs(s2), 1, "the retired pool's ref went with it");
	backend_free(be);
}

/*
 * One reader, driven by hand: a pool retired after the reader loaded it is
 * kept until the reader passes a quiescent point, then freed.
 */
static void
test_grace_period(void)
{
	_Atomic uint64_t	 slot;
	struct backend		*be = mkbackend(2);
	struct server		*s1 = server_find(be, "s1");
	struct pool		*held;

	qsbr_set_waker(count_wake);
	qsbr_register(&slot);
	atomic_store(&slot, qsbr_epoch());	/* quiescent */
	held = backend_pool(be);		/* the reader's pick starts */
	server_ref(s1);				/* keep s1 to watch it */
	server_remove(s1);
	nwakes = 0;
	ok(server_publish(be) == 0 && backend_pool(be) != held,
	    "a new pool is swapped in while the reader holds the old one");
	ok(nwakes == 1, "publishing wakes the workers to pass a quiescent "
	    "point (%d)", nwakes);
	qsbr_reclaim();
	is_int(refs(s1), 2, "reclaim keeps the held pool (its ref on s1 stays)");
	ok(held->primary.n == 2 && held->be == be,
	    "the held pool still reads as it was");
	ok(nwakes == 2, "a pool left retired wakes the workers again (%d)",
	    nwakes);
	atomic_store(&slot, qsbr_epoch());	/* the callback returned */
	qsbr_reclaim();
	is_int(refs(s1), 1, "past the quiescent point the pool is freed");
	qsbr_unregister(&slot);
	server_unref(s1);
	qsbr_set_waker(NULL);
	backend_free(be);
}

/* An idle registered slot holds everything back; unregistering lets go. */
static void
test_unregister(void)
{
	_Atomic uint64_t	 slot;
	struct backend		*be = mkbackend(2);
	struct server		*s2 = server_find(be, "s2");

	qsbr_register(&slot);
	server_ref(s2);
	server_remove(s2);
	server_publish(be);
	qsbr_reclaim();
	is_int(refs(s2), 2, "a reader that never passes a quiescent point "
	    "keeps the retired pool");
	qsbr_unregister(&slot);
	qsbr_reclaim();
	is_int(refs(s2), 1, "once it is unregistered the pool is freed");
	server_unref(s2);
	backend_free(be);
}

struct reader {
	pthread_t		 t;
	_Atomic uint64_t	 slot;
	struct backend		*be;
	long			 loads;
	long			 bad;		/* inconsistent pools seen */
	uint64_t		 rng;
};

static _Atomic bool stop;

/* A worker's life in a loop: quiescent, load the pool, pick, done. */
static void *
reader_main(void *arg)
{
	struct reader	*rd = arg;

	qsbr_register(&rd->slot);
	while (!atomic_load(&stop)) {
		struct pool	*p;
		struct pick	 pk;
		struct server	*s, *first[MAX_SERVERS];
		size_t		 n;

		atomic_store(&rd->slot, qsbr_epoch());
		p = backend_pool(rd->be);
		n = p->primary.n;
		if (p->be != rd->be || n > MAX_SERVERS) {
			rd->bad++;
			continue;
		}
		memcpy(first, p->primary.srv, n * sizeof(*first));
		memset(&pk, 0, sizeof(pk));
		pk.rng = &rd->rng;
		if ((s = server_pick(p, &pk)) != NULL)
			server_done(s);
		/* Still within the callback: the pool must be unchanged and
		 * every server it lists alive. */
		for (size_t i = 0; i < n; i++)
			if (p->primary.srv[i] != first[i] ||
			    atomic_load(&first[i]->refs) < 1)
				rd->bad++;
		if (p->primary.n != n)
			rd->bad++;
		rd->loads++;
	}
	qsbr_unregister(&rd->slot);
	return NULL;
}

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/*
 * Reader threads pick without a lock while the control thread adds and
 * removes servers, republishing and reclaiming all along. No reader ever
 * sees a freed or changing pool; afterwards every pool is reclaimed.
 */
static void
test_concurrent(void)
{
	struct backend	*be = mkbackend(4);
	struct reader	 rd[READERS];
	struct server	*kept[64];
	int		 nkept = 0, publishes = 0, next = 5;
	long		 loads = 0, bad = 0;
	double		 end;

	atomic_store(&stop, false);
	memset(rd, 0, sizeof(rd));
	for (int i = 0; i < READERS; i++) {
		rd[i].be = be;
		rd[i].rng = 0x9e3779b97f4a7c15ULL + (uint64_t)i;
		pthread_create(&rd[i].t, NULL, reader_main, &rd[i]);
	}
	end = now_ms() + RUN_MS;
	while (now_ms() < end) {
		struct server		*s;
		struct sockaddr_in	 sin;
		char			 name[16];

		/* Join one server, and let the oldest leave once 8 are in. */
		snprintf(name, sizeof(name), "s%d", next);
		addr4(&sin, next++);
		server_add(be, name, (struct sockaddr *)&sin, sizeof(sin), 1,
		    0, false, SRC_ADMIN);
		if (be->nservers > 8) {
			s = TAILQ_FIRST(&be->servers);
			if (nkept < 64) {
				server_ref(s);	/* watch it */
				kept[nkept++] = s;
			}
			server_remove(s);
		}
		if (server_publish(be) == 0)
			publishes++;
		qsbr_reclaim();
	}
	atomic_store(&stop, true);
	for (int i = 0; i < READERS; i++) {
		pthread_join(rd[i].t, NULL);
		loads += rd[i].loads;
		bad += rd[i].bad;
	}
	qsbr_reclaim();		/* no reader left: everything goes */
	ok(publishes > 50 && loads > 1000, "concurrent: %d publishes while "
	    "%d readers loaded %ld pools", publishes, READERS, loads);
	is_int(bad, 0, "no reader saw a pool change or a server freed under it");
	{
		int leaked = 0;

		for (int i = 0; i < nkept; i++) {
			if (refs(kept[i]) != 1)
				leaked++;
			server_unref(kept[i]);
		}
		ok(nkept > 0 && leaked == 0, "every retired pool was freed once "
		    "the readers left (%d removed servers, %d still held)",
		    nkept, leaked);
	}
	backend_free(be);
}

int
main(void)
{
	test_publish();
	test_grace_period();
	test_unregister();
	test_concurrent();
	qsbr_drain();
	return done_testing();
}
