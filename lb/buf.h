/*
 * buf.h - relay buffers from a per-worker pool, in two sizes.
 *
 * A session holds a buffer only while bytes are in flight in that
 * direction: an idle session holds none. Interactive traffic uses small
 * buffers; a direction whose reads come back full (bulk) is moved to big
 * ones, which halves or better the syscalls per MiB. A pool belongs to one
 * worker thread and is never shared, so it takes no lock.
 */
#ifndef SHOAL_BUF_H
#define SHOAL_BUF_H

#include <stddef.h>
#include <stdint.h>

#define BUF_SIZE	(32 * 1024)	/* small buffer: requests, replies */
#define BUF_BIG		(128 * 1024)	/* big buffer: bulk transfers */

struct buf {
	struct buf	*next;		/* free list link */
	uint32_t	 off;		/* first unsent byte */
	uint32_t	 len;		/* bytes held, from data[0] */
	uint32_t	 cap;		/* BUF_SIZE or BUF_BIG */
	char		 data[];	/* cap bytes */
};

struct buf_pool {
	struct buf	*free;		/* cached small buffers */
	size_t		 nfree;		/* length of that free list */
	size_t		 max_free;	/* cache at most this many small ones */
	struct buf	*big;		/* cached big buffers */
	size_t		 nbig;		/* length of that free list */
	size_t		 max_big;	/* cache at most this many big ones */
	size_t		 out;		/* buffers handed out, both sizes */
};

/* Caches up to max_free small and max_free / 4 (at least 1) big buffers. */
void		 buf_pool_init(struct buf_pool *, size_t max_free);
/* Frees the cached buffers; every buffer must have been returned. */
void		 buf_pool_fini(struct buf_pool *);

/* An empty small buffer, or NULL (errno ENOMEM). Owned by the caller
 * until put. */
struct buf	*buf_get(struct buf_pool *);

/* The same, BUF_BIG bytes. */
struct buf	*buf_get_big(struct buf_pool *);

/* Give a buffer of either size back; accepts NULL. */
void		 buf_put(struct buf_pool *, struct buf *);

static inline size_t
buf_pending(const struct buf *b)
{
	return b ? b->len - b->off : 0;
}

#endif /* SHOAL_BUF_H */
