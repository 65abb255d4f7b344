/*
 * srclimit.c - the per-source table: lock-free counting of known
 * sources, a bucket spin flag only to give a new source a slot.
 *
 * A slot's state word packs a generation, a busy bit and the session
 * count:
 *
 *   63            33  32  31             0
 *   | generation     |busy| sessions      |
 *
 * Counting (pinning) a session is a CAS on that word, which succeeds
 * only if neither the generation nor the busy bit changed since the
 * slot's key was seen: so a count never lands on a slot that was given
 * to another source in between. A slot with a session is pinned: it is
 * never reused, so its rate state may be updated without the flag.
 * Reuse runs under the bucket flag: mark busy with a new generation
 * (only from zero sessions), write the key and rate state, publish with
 * the first session already counted.
 */
#include <sys/random.h>
#include <netinet/in.h>

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "srclimit.h"

#define KEY_EMPTY	UINT64_MAX
#define KEY_V4		UINT64_C(0xff00000000000000)	/* | IPv4 address */
#define ST_CONNS	UINT64_C(0xffffffff)
#define ST_BUSY		(UINT64_C(1) << 32)
#define ST_GEN1		(UINT64_C(1) << 33)
#define SPINS		64		/* before yielding the CPU */

struct slot {
	_Atomic uint64_t	 key;	/* a source, or KEY_EMPTY */
	_Atomic uint64_t	 st;	/* generation | busy | sessions */
	_Atomic uint64_t	 tat;	/* µs: when the allowance is full
					   again (GCRA); 0 = never used */
};

struct srclimit {
	struct slot		*slots;		/* nbuckets × SRCLIMIT_WAYS */
	_Atomic uint8_t		*flags;		/* one per bucket: inserting */
	size_t			 nbuckets;	/* a power of two */
	uint64_t		 seed;		/* hash key */
	uint32_t		 maxconn;	/* 0 = no cap */
	uint64_t		 interval;	/* µs between sessions; 0 = off */
	uint64_t		 tolerance;	/* µs of burst: (rate-1)×interval */
	_Atomic uint64_t	 evictions;
};

static uint64_t
mix(uint64_t x)		/* splitmix64's finaliser */
{
	x ^= x >> 30;
	x *= UINT64_C(0xbf58476d1ce4e5b9);
	x ^= x >> 27;
	x *= UINT64_C(0x94d049bb133111eb);
	x ^= x >> 31;
	return x;
}

/*
 * The source key of sa: KEY_V4 | address for IPv4 (mapped or not), the
 * first 64 bits for IPv6. The two cannot meet: ff00::/8 is multicast,
 * never the source of a TCP connection. Returns false for other
 * families.
 */
static bool
source_key(const struct sockaddr *sa, uint64_t *key)
{
	const struct sockaddr_in	*sin = (const struct sockaddr_in *)sa;
	const struct sockaddr_in6	*sin6 = (const struct sockaddr_in6 *)sa;
	const uint8_t			*b;
	int				 i;

	if (sa->sa_family == AF_INET) {
		*key = KEY_V4 | ntohl(sin->sin_addr.s_addr);
		return true;
	}
	if (sa->sa_family != AF_INET6)
		return false;
	b = sin6->sin6_addr.s6_addr;
	if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
		*key = KEY_V4 | (uint64_t)b[12] << 24 | (uint64_t)b[13] << 16 |
		    (uint64_t)b[14] << 8 | b[15];
		return true;
	}
	for (*key = 0, i = 0; i < 8; i++)
		*key = *key << 8 | b[i];
	if (*key == KEY_EMPTY)		/* ffff:ffff:ffff:ffff::/64 */
		*key = KEY_EMPTY - 1;
	return true;
}

static struct slot *
bucket(const struct srclimit *t, uint64_t key, size_t *b)
{
	*b = mix(key ^ t->seed) & (t->nbuckets - 1);
	return &t->slots[*b * SRCLIMIT_WAYS];
}

static void
flag_lock(_Atomic uint8_t *f)
{
	int	 spins = 0;

	while (atomic_exchange_explicit(f, 1, memory_order_acquire) != 0) {
		if (++spins == SPINS) {
			spins = 0;
			sched_yield();
		}
	}
}

static void
flag_unlock(_Atomic uint8_t *f)
{
	atomic_store_explicit(f, 0, memory_order_release);
}

size_t
srclimit_capacity(size_t global_maxconn)
{
	size_t	 cap = SRCLIMIT_CAP_MIN;

	while (cap < global_maxconn * 2 && cap < SIZE_MAX / 2)
		cap *= 2;
	return cap;
}

struct srclimit *
srclimit_new(uint32_t maxconn, uint32_t rate, size_t capacity)
{
	struct srclimit	*t;
	size_t		 nb = 1, i;

	if (rate > SRCLIMIT_RATE_MAX ||
	    capacity > SIZE_MAX / 2 / sizeof(struct slot)) {
		errno = EINVAL;
		return NULL;
	}
	while (nb * SRCLIMIT_WAYS < capacity)
		nb *= 2;
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return NULL;
	t->nbuckets = nb;
	t->maxconn = maxconn;
	if (rate > 0) {
		t->interval = 1000000 / rate;
		t->tolerance = (uint64_t)(rate - 1) * t->interval;
	}
	t->slots = calloc(nb * SRCLIMIT_WAYS, sizeof(*t->slots));
	t->flags = calloc(nb, sizeof(*t->flags));
	if (t->slots == NULL || t->flags == NULL) {
		srclimit_free(t);
		errno = ENOMEM;
		return NULL;
	}
	for (i = 0; i < nb * SRCLIMIT_WAYS; i++)
		atomic_init(&t->slots[i].key, KEY_EMPTY);
	if (getrandom(&t->seed, sizeof(t->seed), 0) != sizeof(t->seed))
		t->seed = mix((uint64_t)(uintptr_t)t);	/* still unique */
	return t;
}

void
srclimit_free(struct srclimit *t)
{
	if (t == NULL)
		return;
	free(t->slots);
	free(t->flags);
	free(t);
}

size_t
srclimit_memory(const struct srclimit *t)
{
	return sizeof(*t) + t->nbuckets * SRCLIMIT_WAYS * sizeof(struct slot) +
	    t->nbuckets * sizeof(*t->flags);
}

uint64_t
srclimit_evictions(const struct srclimit *t)
{
	return atomic_load_explicit(&t->evictions, memory_order_relaxed);
}

/*
 * The rate check of a pinned slot (its session already counted): take
 * one from the allowance, or answer false and take nothing.
 */
static bool
rate_take(const struct srclimit *t, struct slot *s, uint64_t now)
{
	uint64_t	 tat, from;

	if (t->interval == 0)
		return true;
	tat = atomic_load_explicit(&s->tat, memory_order_relaxed);
	do {
		from = tat > now ? tat : now;
		if (from - now > t->tolerance)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(&s->tat, &tat,
	    from + t->interval, memory_order_relaxed, memory_order_relaxed));
	return true;
}

enum lookup {
	FOUND_OK,		/* counted and admitted */
	FOUND_REFUSED,		/* *v says why */
	NOT_FOUND,
	RETRY,			/* the slot changed under us */
};

/* Look for key in the bucket and count a session there, lock-free. */
static enum lookup
lookup_take(struct srclimit *t, struct slot *b, uint64_t key, uint64_t now,
    enum srclimit_verdict *v)
{
	struct slot	*s;
	uint64_t	 st;
	int		 i;

	for (i = 0; i < SRCLIMIT_WAYS; i++) {
		s = &b[i];
		/* state first, then key: a key seen after an unchanged
		 * state word belongs to that state's generation */
		st = atomic_load_explicit(&s->st, memory_order_acquire);
		if ((st & ST_BUSY) || atomic_load_explicit(&s->key,
		    memory_order_acquire) != key)
			continue;
		if (t->maxconn != 0 && (st & ST_CONNS) >= t->maxconn) {
			*v = SRCLIMIT_OVER_CONN;
			return FOUND_REFUSED;
		}
		if (!atomic_compare_exchange_strong_explicit(&s->st, &st, st + 1,
		    memory_order_acq_rel, memory_order_relaxed))
			return RETRY;
		if (!rate_take(t, s, now)) {
			atomic_fetch_sub_explicit(&s->st, 1,
			    memory_order_release);
			*v = SRCLIMIT_OVER_RATE;
			return FOUND_REFUSED;
		}
		return FOUND_OK;
	}
	return NOT_FOUND;
}

/*
 * Under the bucket flag: the slot to give a new source. An empty or
 * spent slot (no session, allowance full) first; else the idle slot whose
 * allowance refills soonest; NULL when every slot holds sessions.
 */
static struct slot *
victim(struct slot *b, uint64_t now, uint64_t *st_out, bool *spent)
{
	struct slot	*best = NULL;
	uint64_t	 st, tat, best_tat = UINT64_MAX;
	int		 i;

	for (i = 0; i < SRCLIMIT_WAYS; i++) {
		st = atomic_load_explicit(&b[i].st, memory_order_acquire);
		if ((st & ST_CONNS) != 0)
			continue;
		tat = atomic_load_explicit(&b[i].tat, memory_order_relaxed);
		if (tat <= now) {
			*st_out = st;
			*spent = true;
			return &b[i];
		}
		if (tat < best_tat) {
			best_tat = tat;
			best = &b[i];
			*st_out = st;
		}
	}
	*spent = false;
	return best;
}

/* A source the bucket does not hold: give it a slot, its first session
 * counted. Returns FOUND_OK, RETRY (it arrived meanwhile) or
 * FOUND_REFUSED with SRCLIMIT_FULL. */
static enum lookup
insert_take(struct srclimit *t, size_t bi, struct slot *b, uint64_t key,
    uint64_t now, enum srclimit_verdict *v)
{
	struct slot	*s;
	uint64_t	 st, key_now;
	bool		 spent;
	int		 i;

	flag_lock(&t->flags[bi]);
	for (i = 0; i < SRCLIMIT_WAYS; i++) {
		key_now = atomic_load_explicit(&b[i].key, memory_order_relaxed);
		if (key_now == key) {
			flag_unlock(&t->flags[bi]);
			return RETRY;	/* another thread inserted it */
		}
	}
	for (;;) {
		if ((s = victim(b, now, &st, &spent)) == NULL) {
			flag_unlock(&t->flags[bi]);
			*v = SRCLIMIT_FULL;
			return FOUND_REFUSED;
		}
		/* only from zero sessions: a pinned slot is never taken */
		if (atomic_compare_exchange_strong_explicit(&s->st, &st,
		    (st & ~ST_CONNS) + ST_GEN1 + ST_BUSY, memory_order_acq_rel,
		    memory_order_relaxed))
			break;
	}
	if (!spent && atomic_load_explicit(&s->key, memory_order_relaxed) !=
	    KEY_EMPTY)
		atomic_fetch_add_explicit(&t->evictions, 1,
		    memory_order_relaxed);
	atomic_store_explicit(&s->key, key, memory_order_relaxed);
	atomic_store_explicit(&s->tat, t->interval ? now + t->interval : 0,
	    memory_order_relaxed);
	/* publish: not busy, one session (ours); the release orders the
	 * key and tat stores before it */
	atomic_store_explicit(&s->st, (st & ~ST_CONNS) + ST_GEN1 + 1,
	    memory_order_release);
	flag_unlock(&t->flags[bi]);
	return FOUND_OK;
}

enum srclimit_verdict
srclimit_take(struct srclimit *t, const struct sockaddr *sa, uint64_t now_us)
{
	enum srclimit_verdict	 v = SRCLIMIT_OK;
	struct slot		*b;
	uint64_t		 key;
	size_t			 bi;
	enum lookup		 r;

	if (!source_key(sa, &key))
		return SRCLIMIT_OK;
	b = bucket(t, key, &bi);
	for (;;) {
		r = lookup_take(t, b, key, now_us, &v);
		if (r == NOT_FOUND)
			r = insert_take(t, bi, b, key, now_us, &v);
		if (r == FOUND_OK)
			return SRCLIMIT_OK;
		if (r == FOUND_REFUSED)
			return v;
	}
}

/* The slot holding key with a session counted, or NULL. */
static struct slot *
find(struct srclimit *t, uint64_t key)
{
	struct slot	*b;
	uint64_t	 st;
	size_t		 bi;
	int		 i;

	b = bucket(t, key, &bi);
	for (i = 0; i < SRCLIMIT_WAYS; i++) {
		st = atomic_load_explicit(&b[i].st, memory_order_acquire);
		if (!(st & ST_BUSY) && atomic_load_explicit(&b[i].key,
		    memory_order_acquire) == key)
			return &b[i];
	}
	return NULL;
}

void
srclimit_release(struct srclimit *t, const struct sockaddr *sa)
{
	struct slot	*s;
	uint64_t	 key, st;

	if (!source_key(sa, &key) || (s = find(t, key)) == NULL)
		return;			/* never admitted: nothing to undo */
	/* pinned by the session ending here: the slot cannot change */
	st = atomic_load_explicit(&s->st, memory_order_relaxed);
	do {
		if ((st & ST_CONNS) == 0)
			return;
	} while (!atomic_compare_exchange_weak_explicit(&s->st, &st, st - 1,
	    memory_order_release, memory_order_relaxed));
}

uint32_t
srclimit_conns(struct srclimit *t, const struct sockaddr *sa)
{
	struct slot	*s;
	uint64_t	 key;

	if (!source_key(sa, &key) || (s = find(t, key)) == NULL)
		return 0;
	return (uint32_t)(atomic_load_explicit(&s->st, memory_order_acquire) &
	    ST_CONNS);
}
