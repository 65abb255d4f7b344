/*
 * buf.c - the relay buffer pool.
 */
#include <errno.h>
#include <stdlib.h>

#include "buf.h"

void
buf_pool_init(struct buf_pool *p, size_t max_free)
{
	p->free = NULL;
	p->nfree = 0;
	p->max_free = max_free;
	p->out = 0;
}

void
buf_pool_fini(struct buf_pool *p)
{
	struct buf *b;

	while ((b = p->free) != NULL) {
		p->free = b->next;
		free(b);
	}
	p->nfree = 0;
}

struct buf *
buf_get(struct buf_pool *p)
{
	struct buf *b;

	if ((b = p->free) != NULL) {
		p->free = b->next;
		p->nfree--;
	} else if ((b = malloc(sizeof(*b))) == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	b->next = NULL;
	b->off = b->len = 0;
	p->out++;
	return b;
}

void
buf_put(struct buf_pool *p, struct buf *b)
{
	if (b == NULL)
		return;
	p->out--;
	if (p->nfree >= p->max_free) {
		free(b);
		return;
	}
	b->next = p->free;
	p->free = b;
	p->nfree++;
}
