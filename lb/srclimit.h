/*
 * srclimit.h - per-source limits: maxconn_per_source (sessions a client
 * may hold at once) and rate_per_source (new sessions per second).
 *
 * One table per frontend, shared by every worker thread. A source is an
 * IPv4 address, or the /64 an IPv6 address belongs to: one IPv6 host can
 * pick any of the 2^64 addresses of its /64 (privacy addresses do it on
 * their own), so a per-address limit would limit nothing; a /64 is what
 * one host or one site gets. IPv4-mapped IPv6 addresses are IPv4.
 *
 * The table is a fixed array of slots in buckets of 8, chosen by a
 * keyed hash of the source (the key is random per table, so a client
 * cannot aim at a bucket). Finding a known source and counting it takes
 * no lock: a compare-and-swap on the slot's state word. Only a source
 * the table does not hold yet takes its bucket's spin flag, held for
 * one scan of 8 slots, so that a source never gets two slots.
 *
 * A slot is free to reuse when its source holds no session and its rate
 * allowance is back to full: such an entry says nothing a missing one
 * would not. When a new source finds none in its bucket, the idle slot
 * (no session) whose allowance refills soonest is reused: that source
 * forgets part of its rate history. When all 8 sources of a bucket hold
 * sessions, srclimit_take() answers SRCLIMIT_FULL. Memory is
 * capacity × 24 bytes + capacity / 8, fixed at creation.
 *
 * Rate: a token bucket of N sessions refilled at N per second (GCRA): a
 * client may open N at once, then one every 1/N s. Refused attempts take
 * nothing from the allowance.
 */
#ifndef SHOAL_SRCLIMIT_H
#define SHOAL_SRCLIMIT_H

#include <sys/socket.h>

#include <stddef.h>
#include <stdint.h>

#define SRCLIMIT_WAYS		8		/* slots per bucket */
#define SRCLIMIT_SLOT_BYTES	24		/* one slot's memory */
#define SRCLIMIT_RATE_MAX	1000000		/* new sessions/s per source */
#define SRCLIMIT_CAP_MIN	4096		/* smallest default capacity */

enum srclimit_verdict {
	SRCLIMIT_OK = 0,	/* admitted: call srclimit_release() at the end */
	SRCLIMIT_OVER_CONN,	/* the source holds maxconn sessions already */
	SRCLIMIT_OVER_RATE,	/* the source used its allowance up */
	SRCLIMIT_FULL,		/* no slot for a new source: not counted */
};

struct srclimit;

/*
 * A table for maxconn sessions per source (0 = no cap) and rate new
 * sessions per second per source (0 = no cap, at most SRCLIMIT_RATE_MAX),
 * with capacity slots (rounded up to a power of two, at least one
 * bucket). Returns NULL with errno EINVAL or ENOMEM.
 */
struct srclimit	*srclimit_new(uint32_t maxconn, uint32_t rate,
		    size_t capacity);

/* Free a table (no thread may use it any more); NULL is fine. */
void		 srclimit_free(struct srclimit *t);

/*
 * The capacity for a process allowed global_maxconn sessions: twice
 * that, at least SRCLIMIT_CAP_MIN, a power of two. A source holding a
 * session cannot be evicted, and there are at most global_maxconn of
 * them: at half load a bucket full of them is rare.
 */
size_t		 srclimit_capacity(size_t global_maxconn);

/* The table's size in bytes (slots and bucket flags). */
size_t		 srclimit_memory(const struct srclimit *t);

/*
 * Admit a new session from sa (AF_INET or AF_INET6; other families are
 * always SRCLIMIT_OK and need no release) at now_us, a monotonic clock
 * in microseconds that does not run backwards. SRCLIMIT_OK counts the
 * session: the caller must call srclimit_release() once when it ends.
 * Any other verdict counts nothing. Safe from any number of threads.
 */
enum srclimit_verdict srclimit_take(struct srclimit *t,
		    const struct sockaddr *sa, uint64_t now_us);

/*
 * The end of a session srclimit_take() admitted with SRCLIMIT_OK; sa is
 * the same source (any address of the same IPv6 /64 will do). Safe from
 * any number of threads.
 */
void		 srclimit_release(struct srclimit *t,
		    const struct sockaddr *sa);

/* The sessions sa's source holds now (for stats and tests). */
uint32_t	 srclimit_conns(struct srclimit *t, const struct sockaddr *sa);

/* Slots reused while their source still had rate history (evictions). */
uint64_t	 srclimit_evictions(const struct srclimit *t);

#endif /* SHOAL_SRCLIMIT_H */
