/*
 * balance.c - roundrobin, leastconn, source, random and first.
 *
 * roundrobin: each pool precomputes an interleaved, weighted sequence of
 *   server indexes (server i appears weight_i times, spread out evenly), and
 *   one atomic cursor per backend walks it. Picks are exact across worker
 *   threads: N sequential sessions over K equal servers give N/K each.
 * leastconn: the fewest active sessions relative to weight; ties rotate.
 *   Up to LC_SCAN_MAX servers every one is compared. Beyond, a pick takes
 *   the least loaded of LC_SAMPLES servers drawn by weight (the power of d
 *   choices): O(1) whatever the pool size, with no shared structure to
 *   keep sorted while every worker changes the counters (HAProxy keeps a
 *   tree under a lock instead). With d = 16 the spread stays within a
 *   session or two of the mean (tests/unit/test_balance.c measures it).
 * source: consistent hashing of the client address on a ring of points
 *   (64 per unit of weight), so removing one of K servers moves ~1/K.
 * random: two weighted random choices, the less loaded wins.
 * first: the first server in table order with a free slot (HAProxy's
 *   `first`): sessions fill the servers one after the other up to their
 *   maxconn, so that the last ones stay idle and can be stopped.
 *
 * "Weight" above is the server's effective weight (eff_weight, set by the
 * table from the configured weight, the load it reports and slow start:
 * loadweight.h), except for source, whose ring follows the configured
 * weight only so that a client's server does not move while a newcomer
 * ramps up or a load report changes (HAProxy's slowstart does not apply
 * to its hash algorithms either).
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "balance.h"

#define SEQ_MAX		(1u << 20)	/* longest roundrobin sequence */
#define SWRR_MAX_WORK	(1u << 22)	/* steps allowed for the exact SWRR */
#define RING_VNODES	64		/* ring points per unit of weight */
#define RING_MAX	(1u << 20)	/* most ring points per group */
#define LC_SCAN_MAX	64		/* leastconn: exact scan up to this */
#define LC_SAMPLES	16		/* leastconn: weighted samples beyond */

uint64_t
balance_rand(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static uint32_t
mix32(uint32_t h)
{
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

static uint32_t
fnv1a(const void *p, size_t len, uint32_t h)
{
	const unsigned char *c = p;

	while (len--) {
		h ^= *c++;
		h *= 16777619u;
	}
	return h;
}

uint32_t
balance_addr_hash(const struct sockaddr *sa)
{
	const struct sockaddr_in	*sin = (const void *)sa;
	const struct sockaddr_in6	*sin6 = (const void *)sa;

	if (sa->sa_family == AF_INET)
		return mix32(fnv1a(&sin->sin_addr, 4, 2166136261u));
	if (sa->sa_family == AF_INET6)
		return mix32(fnv1a(&sin6->sin6_addr, 16, 2166136261u));
	return 0;
}

static bool
was_tried(const struct pick *pk, const struct server *s)
{
	for (int i = 0; i < pk->ntried; i++)
		if (pk->tried[i] == s)
			return true;
	return false;
}

/* Take a session slot on s, honouring its maxconn. */
static bool
acquire(struct server *s)
{
	uint32_t cur, max = (uint32_t)s->maxconn;

	if (max == 0) {
		atomic_fetch_add_explicit(&s->cur, 1, memory_order_relaxed);
		return true;
	}
	cur = atomic_load_explicit(&s->cur, memory_order_relaxed);
	do {
		if (cur >= max)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(&s->cur, &cur,
	    cur + 1, memory_order_relaxed, memory_order_relaxed));
	return true;
}

/* Try to take s for this session: not tried before, and a free slot. */
static bool
try_take(struct pick *pk, struct server *s)
{
	if (was_tried(pk, s))
		return false;
	if (pk->dry) {			/* balance_peek: look, take nothing */
		if (s->maxconn > 0 && atomic_load_explicit(&s->cur,
		    memory_order_relaxed) >= (uint32_t)s->maxconn) {
			pk->full = true;
			return false;
		}
		return true;
	}
	if (!acquire(s)) {
		pk->full = true;
		return false;
	}
	return true;
}

static uint32_t
gcd(uint32_t a, uint32_t b)
{
	while (b) {
		uint32_t t = a % b;

		a = b;
		b = t;
	}
	return a;
}

/* One slot of the weighted sequence: the j-th turn of server idx. */
struct seq_ev {
	uint32_t idx;
	uint32_t j;
	uint32_t w;
};

/*
 * Order turns by their ideal time (2j + 1) / (2w): server i's turns are
 * spread evenly over the cycle, so weights 1:2 interleave as B A B.
 */
static int
seq_ev_cmp(const void *a, const void *b)
{
	const struct seq_ev	*x = a, *y = b;
	uint64_t		 l = (uint64_t)(2 * x->j + 1) * y->w;
	uint64_t		 r = (uint64_t)(2 * y->j + 1) * x->w;

	if (l != r)
		return l < r ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/*
 * nginx's smooth weighted round robin, unrolled into a sequence: each turn
 * every server gains its weight, the richest is picked and pays the total.
 * O(total * n), so only used while that stays small.
 */
static void
swrr_fill(uint32_t *seq, const uint32_t *w, size_t n, uint64_t total)
{
	int64_t *cur = calloc(n, sizeof(*cur));

	if (cur == NULL) {		/* degrade to a plain rotation */
		for (uint64_t k = 0; k < total; k++)
			seq[k] = (uint32_t)(k % n);
		return;
	}
	for (uint64_t k = 0; k < total; k++) {
		size_t best = 0;

		for (size_t i = 0; i < n; i++) {
			cur[i] += w[i];
			if (cur[i] > cur[best])
				best = i;
		}
		cur[best] -= (int64_t)total;
		seq[k] = (uint32_t)best;
	}
	free(cur);
}

static int
build_seq(struct pool_group *g)
{
	struct seq_ev	*ev;
	uint32_t	*w, d = 0;
	uint64_t	 total = 0;
	size_t		 i, k = 0;

	g->seq = NULL;
	g->seqlen = 0;
	if (g->n == 0)
		return 0;
	if ((w = calloc(g->n, sizeof(*w))) == NULL)
		return -1;
	for (i = 0; i < g->n; i++) {
		w[i] = atomic_load_explicit(&g->srv[i]->eff_weight,
		    memory_order_relaxed);
		d = gcd(d, w[i]);
	}
	for (i = 0; i < g->n; i++) {
		w[i] /= d;
		total += w[i];
	}
	if (total > SEQ_MAX) {
		/* Scale down; every server keeps at least one turn. */
		uint64_t scaled = 0;

		for (i = 0; i < g->n; i++) {
			w[i] = (uint32_t)(((uint64_t)w[i] * SEQ_MAX) / total);
			if (w[i] == 0)
				w[i] = 1;
			scaled += w[i];
		}
		total = scaled;
	}
	if ((g->seq = calloc(total, sizeof(*g->seq))) == NULL) {
		free(w);
		return -1;
	}
	g->seqlen = (uint32_t)total;
	if (total == g->n) {
		/* Equal weights: plain rotation. */
		for (i = 0; i < g->n; i++)
			g->seq[i] = (uint32_t)i;
		free(w);
		return 0;
	}
	if (total * g->n <= SWRR_MAX_WORK) {
		swrr_fill(g->seq, w, g->n, total);
		free(w);
		return 0;
	}
	if ((ev = calloc(total, sizeof(*ev))) == NULL) {
		free(g->seq);
		g->seq = NULL;
		g->seqlen = 0;
		free(w);
		return -1;
	}
	for (i = 0; i < g->n; i++)
		for (uint32_t j = 0; j < w[i]; j++)
			ev[k++] = (struct seq_ev){ (uint32_t)i, j, w[i] };
	qsort(ev, total, sizeof(*ev), seq_ev_cmp);
	for (i = 0; i < total; i++)
		g->seq[i] = ev[i].idx;
	free(ev);
	free(w);
	return 0;
}

/* Roundrobin and random both walk the weighted sequence. */
static int
rr_build(struct pool_group *g)
{
	return build_seq(g);
}

static struct server *
rr_pick(struct pool *p, struct pool_group *g, struct pick *pk)
{
	uint64_t pos;

	if (g->seqlen == 0)
		return NULL;
	pos = pk->dry ? atomic_load_explicit(&p->be->rr, memory_order_relaxed)
	    : atomic_fetch_add_explicit(&p->be->rr, 1, memory_order_relaxed);
	for (uint32_t i = 0; i < g->seqlen; i++) {
		struct server *s = g->srv[g->seq[(pos + i) % g->seqlen]];

		if (try_take(pk, s))
			return s;
	}
	return NULL;
}

/* a is less loaded than b, relative to their weights. */
static bool
less_loaded(const struct server *a, const struct server *b)
{
	uint64_t ca = atomic_load_explicit(&a->cur, memory_order_relaxed);
	uint64_t cb = atomic_load_explicit(&b->cur, memory_order_relaxed);
	uint64_t wa = atomic_load_explicit(&a->eff_weight, memory_order_relaxed);
	uint64_t wb = atomic_load_explicit(&b->eff_weight, memory_order_relaxed);

	return (ca + 1) * wb < (cb + 1) * wa;
}

static int
lc_build(struct pool_group *g)
{
	return build_seq(g);	/* big pools sample from it, by weight */
}

/* s if this session may use it and it beats best (NULL: none yet), else
 * best. A server at its maxconn sets pk->full. */
static struct server *
lc_better(struct pick *pk, struct server *s, struct server *best)
{
	if (was_tried(pk, s))
		return best;
	if (s->maxconn > 0 && atomic_load_explicit(&s->cur,
	    memory_order_relaxed) >= (uint32_t)s->maxconn) {
		pk->full = true;
		return best;
	}
	return best == NULL || less_loaded(s, best) ? s : best;
}

/* The least loaded of LC_SAMPLES servers drawn by weight, or NULL. */
static struct server *
lc_sample(struct pool_group *g, struct pick *pk)
{
	struct server *best = NULL;

	for (int i = 0; i < LC_SAMPLES; i++) {
		struct server *s = g->srv[g->seq[balance_rand(pk->rng) %
		    g->seqlen]];

		if (s != best)
			best = lc_better(pk, s, best);
	}
	return best;
}

static struct server *
lc_pick(struct pool *p, struct pool_group *g, struct pick *pk)
{
	struct server	*best = NULL;
	size_t		 start, i;

	if (g->n == 0)
		return NULL;
	if (g->n > LC_SCAN_MAX && g->seqlen > 0) {
		/* Big pool: sample. Nothing found (mostly tried or full):
		 * the full scan below decides. */
		for (int attempt = 0; attempt < 4; attempt++)
			if ((best = lc_sample(g, pk)) != NULL &&
			    (pk->dry || acquire(best)))
				return best;
	}
	/* Rotate the starting point so that ties spread evenly. */
	start = (pk->dry ? atomic_load_explicit(&p->be->rr,
	    memory_order_relaxed) : atomic_fetch_add_explicit(&p->be->rr, 1,
	    memory_order_relaxed)) % g->n;
	for (int attempt = 0; attempt < 4; attempt++) {
		best = NULL;
		for (i = 0; i < g->n; i++)
			best = lc_better(pk, g->srv[(start + i) % g->n], best);
		if (best == NULL)
			return NULL;
		/* Another worker may have filled it in between. */
		if (pk->dry || acquire(best))
			return best;
	}
	pk->full = true;
	return NULL;
}

static int
ring_cmp(const void *a, const void *b)
{
	const uint64_t *x = a, *y = b;

	return *x < *y ? -1 : *x > *y;
}

static int
src_build(struct pool_group *g)
{
	uint64_t	*pts;
	uint64_t	 total = 0;
	uint32_t	 vn = RING_VNODES;
	size_t		 i, k = 0;

	g->ring = g->ring_srv = NULL;
	g->nring = 0;
	if (g->n == 0)
		return 0;
	for (i = 0; i < g->n; i++)
		total += (uint64_t)g->srv[i]->weight;
	while (vn > 1 && total * vn > RING_MAX)
		vn /= 2;
	total *= vn;
	if ((pts = calloc(total, sizeof(*pts))) == NULL)
		return -1;
	if ((g->ring = calloc(total, sizeof(*g->ring))) == NULL ||
	    (g->ring_srv = calloc(total, sizeof(*g->ring_srv))) == NULL) {
		free(pts);
		free(g->ring);
		g->ring = NULL;
		return -1;
	}
	/* Points depend only on the server's identity, never on its index. */
	for (i = 0; i < g->n; i++) {
		uint32_t npts = (uint32_t)g->srv[i]->weight * vn;

		for (uint32_t j = 0; j < npts; j++) {
			uint32_t h = mix32(g->srv[i]->name_hash ^
			    mix32(j * 0x9e3779b9u + 1));

			pts[k++] = ((uint64_t)h << 32) | i;
		}
	}
	qsort(pts, total, sizeof(*pts), ring_cmp);
	for (i = 0; i < total; i++) {
		g->ring[i] = (uint32_t)(pts[i] >> 32);
		g->ring_srv[i] = (uint32_t)pts[i];
	}
	g->nring = (uint32_t)total;
	free(pts);
	return 0;
}

static struct server *
src_pick(struct pool *p, struct pool_group *g, struct pick *pk)
{
	uint32_t	 h, lo = 0, hi;

	(void)p;
	if (g->nring == 0)
		return NULL;
	h = pk->client ? balance_addr_hash(pk->client) : 0;
	hi = g->nring;
	while (lo < hi) {		/* first point >= h */
		uint32_t mid = lo + (hi - lo) / 2;

		if (g->ring[mid] < h)
			lo = mid + 1;
		else
			hi = mid;
	}
	/* Walk on from there to the next server this session may use. */
	for (uint32_t i = 0; i < g->nring; i++) {
		struct server *s = g->srv[g->ring_srv[(lo + i) % g->nring]];

		if (try_take(pk, s))
			return s;
	}
	return NULL;
}

static struct server *
rand_pick(struct pool *p, struct pool_group *g, struct pick *pk)
{
	if (g->seqlen == 0)
		return NULL;
	for (int attempt = 0; attempt < 8; attempt++) {
		uint64_t	 r = balance_rand(pk->rng);
		struct server	*a = g->srv[g->seq[(uint32_t)r % g->seqlen]];
		struct server	*b = g->srv[g->seq[(uint32_t)(r >> 32) %
				    g->seqlen]];
		struct server	*first, *second;

		if (less_loaded(b, a)) {
			first = b;
			second = a;
		} else {
			first = a;
			second = b;
		}
		if (try_take(pk, first))
			return first;
		if (second != first && try_take(pk, second))
			return second;
	}
	/* Unlucky or mostly excluded: fall back to a full walk. */
	return rr_pick(p, g, pk);
}

static int
first_build(struct pool_group *g)
{
	(void)g;
	return 0;
}

static struct server *
first_pick(struct pool *p, struct pool_group *g, struct pick *pk)
{
	(void)p;
	for (size_t i = 0; i < g->n; i++)
		if (atomic_load_explicit(&g->srv[i]->weight,
		    memory_order_relaxed) > 0 && try_take(pk, g->srv[i]))
			return g->srv[i];
	return NULL;
}

static const struct balance_ops balance_table[] = {
	[BALANCE_ROUNDROBIN] = { "roundrobin", rr_build, rr_pick },
	[BALANCE_LEASTCONN] = { "leastconn", lc_build, lc_pick },
	[BALANCE_SOURCE] = { "source", src_build, src_pick },
	[BALANCE_RANDOM] = { "random", rr_build, rand_pick },
	[BALANCE_FIRST] = { "first", first_build, first_pick },
};

const struct balance_ops *
balance_ops_get(enum conf_balance b)
{
	if ((size_t)b >= sizeof(balance_table) / sizeof(balance_table[0]))
		return &balance_table[BALANCE_ROUNDROBIN];
	return &balance_table[b];
}

static void
group_free(struct pool_group *g)
{
	free(g->srv);
	free(g->seq);
	free(g->ring);
	free(g->ring_srv);
}

void
balance_pool_free(struct pool *p)
{
	if (p == NULL)
		return;
	group_free(&p->primary);
	group_free(&p->backup);
	free(p);
}

struct pool *
balance_pool_new(struct backend *be, struct server *const *srv, size_t n)
{
	struct pool		*p;
	struct pool_group	*g;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	p->primary.srv = calloc(n + 1, sizeof(*p->primary.srv));
	p->backup.srv = calloc(n + 1, sizeof(*p->backup.srv));
	if (p->primary.srv == NULL || p->backup.srv == NULL) {
		balance_pool_free(p);
		errno = ENOMEM;
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		g = srv[i]->backup ? &p->backup : &p->primary;
		g->srv[g->n++] = srv[i];
	}
	p->be = be;
	p->ops = balance_ops_get(be->conf.balance);
	p->timeout_connect_ms = be->conf.timeout_connect_ms;
	p->timeout_server_ms = be->conf.timeout_server_ms;
	p->timeout_queue_ms = be->conf.timeout_queue_ms;
	p->retries = be->conf.retries;
	p->send_proxy = be->conf.send_proxy;
	p->nall = (int)be->nservers;
	if (p->ops->build(&p->primary) == -1 ||
	    p->ops->build(&p->backup) == -1) {
		balance_pool_free(p);
		errno = ENOMEM;
		return NULL;
	}
	return p;
}

struct server *
balance_pick(struct pool *p, struct pick *pk)
{
	struct server	*s = NULL;
	bool		 primary_left = false;

	pk->full = false;
	if (p->primary.n > 0) {
		s = p->ops->pick(p, &p->primary, pk);
		for (size_t i = 0; s == NULL && i < p->primary.n; i++)
			if (!was_tried(pk, p->primary.srv[i]))
				primary_left = true;
	}
	/* Backups only when no primary remains: not merely all busy. */
	if (s == NULL && !primary_left && p->backup.n > 0)
		s = p->ops->pick(p, &p->backup, pk);
	if (s == NULL)
		return NULL;
	atomic_fetch_add_explicit(&s->total, 1, memory_order_relaxed);
	return s;
}

struct server *
balance_peek(struct pool *p, const struct sockaddr *client, bool *backup)
{
	struct pick	 pk;
	uint64_t	 rng = 0x9e3779b97f4a7c15ULL;
	struct server	*s = NULL;

	memset(&pk, 0, sizeof(pk));
	pk.client = client;
	pk.rng = &rng;
	pk.dry = true;
	*backup = false;
	if (p->primary.n > 0)
		s = p->ops->pick(p, &p->primary, &pk);
	/* As balance_pick for a session that tried nothing: backups only
	 * when there is no eligible primary at all. */
	if (s == NULL && p->primary.n == 0 && p->backup.n > 0) {
		s = p->ops->pick(p, &p->backup, &pk);
		*backup = s != NULL;
	}
	return s;
}

void
balance_done(struct server *s)
{
	if (s == NULL)
		return;
	atomic_fetch_sub_explicit(&s->cur, 1, memory_order_relaxed);
}
