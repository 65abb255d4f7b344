/*
 * buf.h - fixed-size relay buffers from a per-worker pool.
 *
 * A session holds a buffer only while bytes are in flight in that
 * direction: an idle session holds none. A pool belongs to one worker
 * thread and is never shared, so it takes no lock.
 */
#ifndef SHOAL_BUF_H
#define SHOAL_BUF_H

#include <stddef.h>
#include <stdint.h>

#define BUF_SIZE	(32 * 1024)

struct buf {
	struct buf	*next;		/* free list link */
	uint32_t	 off;		/* first unsent byte */
	uint32_t	 len;		/* bytes held, from data[0] */
	char		 data[BUF_SIZE];
};

struct buf_pool {
	struct buf	*free;		/* cached buffers */
	size_t		 nfree;		/* length of the free list */
	size_t		 max_free;	/* cache at most this many */
	size_t		 out;		/* buffers handed out */
};

void		 buf_pool_init(struct buf_pool *, size_t max_free);
/* Frees the cached buffers; every buffer must have been returned. */
void		 buf_pool_fini(struct buf_pool *);

/* An empty buffer, or NULL (errno ENOMEM). Owned by the caller until put. */
struct buf	*buf_get(struct buf_pool *);

/* Give a buffer back; accepts NULL. */
void		 buf_put(struct buf_pool *, struct buf *);

static inline size_t
buf_pending(const struct buf *b)
{
	return b ? b->len - b->off : 0;
}

#endif /* SHOAL_BUF_H */
