/*
 * test_balance.c - properties of the balancing algorithms.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "balance.h"
#include "server.h"
#include "t.h"

static uint64_t rng = 88172645463325252ULL;

static void
addr4(struct sockaddr_in *sin, const char *ip, int port)
{
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)port);
	inet_pton(AF_INET, ip, &sin->sin_addr);
}

/* A backend with n servers s1..sn on 10.0.0.i:80 and the given weights. */
static struct backend *
mkbackend(enum conf_balance bal, int n, const int *weights)
{
	struct conf_backend	 cb;
	struct backend		*be;

	memset(&cb, 0, sizeof(cb));
	snprintf(cb.name, sizeof(cb.name), "app");
	cb.balance = bal;
	cb.retries = 2;
	cb.check = CHECK_NONE;
	be = backend_new(&cb);
	for (int i = 0; i < n; i++) {
		struct sockaddr_in	sin;
		char			name[16], ip[32];

		snprintf(name, sizeof(name), "s%d", i + 1);
		snprintf(ip, sizeof(ip), "10.0.0.%d", i + 1);
		addr4(&sin, ip, 80);
		server_add(be, name, (struct sockaddr *)&sin, sizeof(sin),
		    weights ? weights[i] : 1, 0, false, SRC_STATIC);
	}
	server_publish(be);
	return be;
}

static int
idx(struct server *s)
{
	return atoi(s->name + 1) - 1;
}

/* Pick for a fresh session from client address cli (may be NULL). */
static struct server *
pick1(struct backend *be, const struct sockaddr *cli)
{
	struct pick pk;

	memset(&pk, 0, sizeof(pk));
	pk.client = cli;
	pk.rng = &rng;
	return server_pick(backend_pool(be), &pk);
}

static void
test_roundrobin_exact(void)
{
	struct backend	*be = mkbackend(BALANCE_ROUNDROBIN, 3, NULL);
	int		 cnt[3] = { 0 }, last = -1, repeats = 0;

	for (int i = 0; i < 300; i++) {
		struct server *s = pick1(be, NULL);

		cnt[idx(s)]++;
		if (idx(s) == last)
			repeats++;
		last = idx(s);
		server_done(s);
	}
	ok(cnt[0] == 100 && cnt[1] == 100 && cnt[2] == 100,
	    "roundrobin: 300 picks over 3 servers split 100/100/100 (%d/%d/%d)",
	    cnt[0], cnt[1], cnt[2]);
	is_int(repeats, 0, "roundrobin: never the same server twice in a row");
	backend_free(be);
}

static void
test_roundrobin_weighted(void)
{
	int		 w[2] = { 1, 2 }, cnt[2] = { 0 };
	struct backend	*be = mkbackend(BALANCE_ROUNDROBIN, 2, w);
	char		 seq[31] = { 0 };
	bool		 a_twice = false;

	for (int i = 0; i < 30; i++) {
		struct server *s = pick1(be, NULL);

		cnt[idx(s)]++;
		seq[i] = idx(s) ? 'B' : 'A';
		if (i > 0 && seq[i] == 'A' && seq[i - 1] == 'A')
			a_twice = true;
		server_done(s);
	}
	ok(cnt[0] == 10 && cnt[1] == 20,
	    "weights 1:2: 30 picks split 10/20 (%d/%d)", cnt[0], cnt[1]);
	ok(!a_twice && strstr(seq, "BBB") == NULL,
	    "weights 1:2 interleave (%s)", seq);
	backend_free(be);

	int		 w3[3] = { 5, 1, 1 };
	int		 c3[3] = { 0 }, run = 0, maxrun = 0;

	be = mkbackend(BALANCE_ROUNDROBIN, 3, w3);
	for (int i = 0; i < 70; i++) {
		struct server *s = pick1(be, NULL);

		c3[idx(s)]++;
		run = idx(s) == 0 ? run + 1 : 0;
		if (run > maxrun)
			maxrun = run;
		server_done(s);
	}
	ok(c3[0] == 50 && c3[1] == 10 && c3[2] == 10,
	    "weights 5:1:1 split 50/10/10 (%d/%d/%d)", c3[0], c3[1], c3[2]);
	ok(maxrun <= 4, "weights 5:1:1: the heavy server runs at most 4 in a row, as nginx smooth WRR (%d)",
	    maxrun);
	backend_free(be);
}

static void
test_weight_zero(void)
{
	int		 w[3] = { 1, 0, 1 };
	struct backend	*be = mkbackend(BALANCE_ROUNDROBIN, 3, w);
	int		 cnt[3] = { 0 };

	for (int i = 0; i < 20; i++) {
		struct server *s = pick1(be, NULL);

		cnt[idx(s)]++;
		server_done(s);
	}
	ok(cnt[1] == 0 && cnt[0] == 10 && cnt[2] == 10,
	    "weight 0 is never picked (%d/%d/%d)", cnt[0], cnt[1], cnt[2]);
	backend_free(be);
}

static void
test_no_repeat_in_session(enum conf_balance bal, const char *name)
{
	struct backend		*be = mkbackend(bal, 5, NULL);
	struct pick		 pk;
	struct sockaddr_in	 cli;
	struct server		*s;
	int			 seen[5] = { 0 }, n = 0;
	bool			 dup = false;

	addr4(&cli, "192.0.2.7", 1234);
	memset(&pk, 0, sizeof(pk));
	pk.client = (struct sockaddr *)&cli;
	pk.rng = &rng;
	while ((s = server_pick(backend_pool(be), &pk)) != NULL) {
		if (seen[idx(s)]++)
			dup = true;
		pk.tried[pk.ntried++] = s;
		n++;
		server_done(s);
	}
	ok(!dup && n == 5,
	    "%s: a session's retries try every server once, never twice (%d)",
	    name, n);
	backend_free(be);
}

static void
test_leastconn(void)
{
	struct backend	*be = mkbackend(BALANCE_LEASTCONN, 3, NULL);
	struct server	*held[4], *s;
	int		 cnt[3] = { 0 };

	/* Four sessions held: they spread 2/1/1 or similar, never 4/0/0. */
	for (int i = 0; i < 4; i++)
		held[i] = pick1(be, NULL);
	for (int i = 0; i < 4; i++)
		cnt[idx(held[i])]++;
	ok(cnt[0] <= 2 && cnt[1] <= 2 && cnt[2] <= 2,
	    "leastconn spreads held sessions (%d/%d/%d)", cnt[0], cnt[1],
	    cnt[2]);
	/* Load s1 heavily; new picks avoid it. */
	struct server *s1 = server_find(be, "s1");
	for (int i = 0; i < 10; i++)
		atomic_fetch_add(&s1->cur, 1);
	bool avoided = true;
	for (int i = 0; i < 6; i++) {
		s = pick1(be, NULL);
		if (s == s1)
			avoided = false;
		held[i % 4] = held[i % 4];	/* keep */
		server_done(s);
	}
	ok(avoided, "leastconn: a loaded server gets no new session");
	atomic_fetch_sub(&s1->cur, 10);
	for (int i = 0; i < 4; i++)
		server_done(held[i]);
	backend_free(be);

	/* Weighted: with weights 1:3 and equal load, the heavy one wins. */
	int w[2] = { 1, 3 };
	be = mkbackend(BALANCE_LEASTCONN, 2, w);
	memset(cnt, 0, sizeof(cnt));
	struct server *h[8];
	for (int i = 0; i < 8; i++) {
		h[i] = pick1(be, NULL);
		cnt[idx(h[i])]++;
	}
	ok(cnt[0] == 2 && cnt[1] == 6,
	    "leastconn weights 1:3: 8 held sessions split 2/6 (%d/%d)", cnt[0],
	    cnt[1]);
	for (int i = 0; i < 8; i++)
		server_done(h[i]);
	backend_free(be);
}

static void
test_source(void)
{
	enum { K = 5, CLIENTS = 2000 };
	struct backend		*be = mkbackend(BALANCE_SOURCE, K, NULL);
	int			 before[CLIENTS], moved = 0, wrong = 0;
	int			 cnt[K] = { 0 };
	struct sockaddr_in	 cli;
	char			 ip[32];

	for (int i = 0; i < CLIENTS; i++) {
		struct server *s;

		snprintf(ip, sizeof(ip), "10.%d.%d.%d", i >> 16 & 255,
		    i >> 8 & 255, i & 255);
		addr4(&cli, ip, 40000 + i);
		s = pick1(be, (struct sockaddr *)&cli);
		before[i] = idx(s);
		cnt[idx(s)]++;
		server_done(s);
		/* Same address, other port: same server. */
		addr4(&cli, ip, 1000);
		s = pick1(be, (struct sockaddr *)&cli);
		if (idx(s) != before[i])
			wrong++;
		server_done(s);
	}
	is_int(wrong, 0, "source: a client address always maps to one server");
	bool spread = true;
	for (int k = 0; k < K; k++)
		if (cnt[k] < CLIENTS / K / 2)
			spread = false;
	ok(spread, "source: clients spread over all servers (%d %d %d %d %d)",
	    cnt[0], cnt[1], cnt[2], cnt[3], cnt[4]);

	/* Remove s3: only its clients move. */
	server_remove(server_find(be, "s3"));
	server_publish(be);
	for (int i = 0; i < CLIENTS; i++) {
		struct server *s;

		snprintf(ip, sizeof(ip), "10.%d.%d.%d", i >> 16 & 255,
		    i >> 8 & 255, i & 255);
		addr4(&cli, ip, 40000 + i);
		s = pick1(be, (struct sockaddr *)&cli);
		if (idx(s) != before[i]) {
			moved++;
			if (before[i] != 2)
				wrong++;
		}
		server_done(s);
	}
	is_int(wrong, 0, "source: removing a server moves only its own clients");
	ok(moved > CLIENTS / K / 2 && moved < CLIENTS * 2 / K,
	    "source: removing 1 of %d servers moves about 1/%d of clients (%d of %d)",
	    K, K, moved, CLIENTS);
	backend_free(be);
}

static void
test_random(void)
{
	struct backend	*be = mkbackend(BALANCE_RANDOM, 4, NULL);
	int		 cnt[4] = { 0 };

	for (int i = 0; i < 4000; i++) {
		struct server *s = pick1(be, NULL);

		cnt[idx(s)]++;
		server_done(s);
	}
	ok(cnt[0] > 700 && cnt[1] > 700 && cnt[2] > 700 && cnt[3] > 700,
	    "random: 4000 picks reach every server (%d/%d/%d/%d)", cnt[0],
	    cnt[1], cnt[2], cnt[3]);
	backend_free(be);
}

static void
test_backup_and_maxconn(void)
{
	struct conf_backend	 cb;
	struct backend		*be;
	struct sockaddr_in	 sin;
	struct server		*p1, *b1, *s, *held;
	struct pick		 pk;

	memset(&cb, 0, sizeof(cb));
	snprintf(cb.name, sizeof(cb.name), "app");
	be = backend_new(&cb);
	addr4(&sin, "10.0.0.1", 80);
	p1 = server_add(be, "p1", (struct sockaddr *)&sin, sizeof(sin), 1, 1,
	    false, SRC_STATIC);
	addr4(&sin, "10.0.0.2", 80);
	b1 = server_add(be, "b1", (struct sockaddr *)&sin, sizeof(sin), 1, 0,
	    true, SRC_STATIC);
	server_publish(be);

	s = pick1(be, NULL);
	ok(s == p1, "backup: the primary is used while it is usable");
	held = s;
	memset(&pk, 0, sizeof(pk));
	pk.rng = &rng;
	s = server_pick(backend_pool(be), &pk);
	ok(s == NULL && pk.full,
	    "maxconn: a full primary is waited for, not replaced by a backup");
	server_done(held);

	memset(&pk, 0, sizeof(pk));
	pk.rng = &rng;
	pk.tried[pk.ntried++] = p1;
	s = server_pick(backend_pool(be), &pk);
	ok(s == b1, "backup: used once every primary was tried");
	server_done(s);

	p1->health = HEALTH_DOWN;
	server_publish(be);
	s = pick1(be, NULL);
	ok(s == b1, "backup: used when no primary is eligible");
	server_done(s);

	b1->admin = ADM_DRAIN;
	server_publish(be);
	ok(pick1(be, NULL) == NULL, "no eligible server: pick returns NULL");
	backend_free(be);
}

static void
test_refcount(void)
{
	struct backend	*be = mkbackend(BALANCE_ROUNDROBIN, 2, NULL);
	struct server	*s = pick1(be, NULL);
	char		 name[CONF_NAME_MAX];

	snprintf(name, sizeof(name), "%s", s->name);
	server_remove(s);
	server_publish(be);
	qsbr_reclaim();
	ok(server_find(be, name) == NULL && atomic_load(&s->refs) == 1,
	    "a removed server lives on with only its session's reference");
	for (int i = 0; i < 10; i++) {
		struct server *o = pick1(be, NULL);

		ok(o != s, "a removed server is never picked (%d)", i);
		server_done(o);
	}
	server_done(s);	/* frees it; ASan/valgrind would complain if not */
	backend_free(be);
}

/*
 * leastconn over a big pool (sampled): held sessions still spread evenly
 * and by weight. n servers, 10 sessions each on average, all held.
 */
static void
test_leastconn_big(void)
{
	enum { N = 2000, PER = 10 };
	static struct server	*held[N * PER];
	static int		 w[N];
	struct backend		*be;
	int			 lo = 1 << 30, hi = 0;
	uint64_t		 light = 0, heavy = 0;

	be = mkbackend(BALANCE_LEASTCONN, N, NULL);
	for (int i = 0; i < N * PER; i++)
		held[i] = pick1(be, NULL);
	for (int i = 0; i < N; i++) {
		struct server	*s;
		char		 name[16];
		int		 c;

		snprintf(name, sizeof(name), "s%d", i + 1);
		s = server_find(be, name);
		c = (int)atomic_load(&s->cur);
		lo = c < lo ? c : lo;
		hi = c > hi ? c : hi;
	}
	ok(lo >= PER - 2 && hi <= PER + 2, "leastconn, %d servers: %d held "
	    "sessions spread %d..%d per server (mean %d)", N, N * PER, lo, hi,
	    PER);
	for (int i = 0; i < N * PER; i++)
		server_done(held[i]);
	backend_free(be);

	/* Weights 1 and 3 alternating: 3 times the sessions on the heavy. */
	for (int i = 0; i < N; i++)
		w[i] = i % 2 ? 3 : 1;
	be = mkbackend(BALANCE_LEASTCONN, N, w);
	for (int i = 0; i < N * PER; i++) {
		held[i] = pick1(be, NULL);
		if (w[idx(held[i])] == 3)
			heavy++;
		else
			light++;
	}
	ok(heavy > 2.7 * light && heavy < 3.3 * light, "leastconn, %d "
	    "servers weighted 1:3: sessions %llu:%llu", N,
	    (unsigned long long)light, (unsigned long long)heavy);
	for (int i = 0; i < N * PER; i++)
		server_done(held[i]);
	backend_free(be);
}

/* The balancer builds pools from the servers the table hands it. */
static void
test_pool_new(void)
{
	struct backend		*be = mkbackend(BALANCE_SOURCE, 3, NULL);
	struct server		*list[3], *s;
	struct pool		*p;

	be->conf.timeout_queue_ms = 1234;
	list[0] = server_find(be, "s1");
	list[1] = server_find(be, "s2");
	list[2] = server_find(be, "s3");
	list[1]->backup = true;
	p = server_pool_new(be, list, 3);
	ok(p != NULL && p->primary.n == 2 && p->backup.n == 1 &&
	    p->backup.srv[0] == list[1], "pool_new: backups go to the backup "
	    "group, in the order given");
	ok(p->timeout_queue_ms == 1234 && p->nall == 3 &&
	    p->ops == balance_ops_get(BALANCE_SOURCE),
	    "pool_new: the backend's settings and algorithm");
	ok(p->primary.nring > 0 && p->backup.nring > 0,
	    "pool_new: each group gets its algorithm's tables");
	is_int(atomic_load(&list[0]->refs), 3,
	    "pool_new: the new pool holds a reference on each server");
	server_pool_free(p);
	is_int(atomic_load(&list[0]->refs), 2,
	    "pool_free: and drops it");
	p = server_pool_new(be, list, 0);
	s = pick1(be, NULL);
	ok(p != NULL && p->primary.n == 0 && s != NULL,
	    "pool_new: an empty pool is valid (and leaves the live one alone)");
	server_done(s);
	server_pool_free(p);
	server_pool_free(NULL);
	list[1]->backup = false;
	backend_free(be);
}

/* balance_peek names what the next pick gives, and changes nothing. */
static void
test_peek(void)
{
	static const enum conf_balance algs[] = { BALANCE_ROUNDROBIN,
	    BALANCE_LEASTCONN, BALANCE_SOURCE, BALANCE_FIRST };
	static const char *const names[] = { "roundrobin", "leastconn",
	    "source", "first" };
	struct sockaddr_in	 cli;
	int			 agree = 0, total = 0;

	addr4(&cli, "192.0.2.7", 40000);
	for (size_t a = 0; a < sizeof(algs) / sizeof(algs[0]); a++) {
		int		 w[4] = { 1, 2, 1, 3 };
		struct backend	*be = mkbackend(algs[a], 4, w);
		struct server	*held[3], *kept[20], *p, *s;
		int		 nkept = 0;
		bool		 backup;
		uint32_t	 cur[4];
		uint64_t	 rr;
		int		 ok_here = 1;

		/* some load, so that leastconn has something to weigh */
		for (int i = 0; i < 3; i++)
			held[i] = pick1(be, (struct sockaddr *)&cli);
		for (int i = 0; i < 20; i++) {
			TAILQ_FOREACH(s, &be->servers, entry)
				cur[idx(s)] = atomic_load(&s->cur);
			rr = atomic_load(&be->rr);
			p = balance_peek(backend_pool(be),
			    (struct sockaddr *)&cli, &backup);
			TAILQ_FOREACH(s, &be->servers, entry)
				if (atomic_load(&s->cur) != cur[idx(s)])
					ok_here = 0;
			if (atomic_load(&be->rr) != rr || backup)
				ok_here = 0;
			s = pick1(be, (struct sockaddr *)&cli);
			total++;
			if (s == p)
				agree++;
			else
				ok_here = 0;
			if (i % 2 == 0)
				server_done(s);	/* keep some, free some */
			else
				kept[nkept++] = s;
		}
		ok(ok_here, "peek (%s): names the next pick and takes nothing",
		    names[a]);
		for (int i = 0; i < 3; i++)
			server_done(held[i]);
		for (int i = 0; i < nkept; i++)
			server_done(kept[i]);
		backend_free(be);
	}
	is_int(agree, total, "peek agreed with every pick");
}

int
main(void)
{
	test_pool_new();
	test_peek();
	test_roundrobin_exact();
	test_roundrobin_weighted();
	test_weight_zero();
	test_no_repeat_in_session(BALANCE_ROUNDROBIN, "roundrobin");
	test_no_repeat_in_session(BALANCE_LEASTCONN, "leastconn");
	test_no_repeat_in_session(BALANCE_SOURCE, "source");
	test_no_repeat_in_session(BALANCE_RANDOM, "random");
	test_leastconn();
	test_leastconn_big();
	test_source();
	test_random();
	test_backup_and_maxconn();
	test_refcount();
	qsbr_drain();
	return done_testing();
}
