/*
 * buf.c - the relay buffer pool: two free lists, one per size.
 */
#include <errno.h>
#include <stdlib.h>

#include "buf.h"

void
buf_pool_init(struct buf_pool *p, size_t max_free)
{
	p->free = p->big = NULL;
	p->nfree = p->nbig = 0;
	p->max_free = max_free;
	p->max_big = max_free / 4 > 0 ? max_free / 4 : 1;
	p->out = 0;
}

static void
list_free(struct buf **head)
{
	struct buf *b;

	while ((b = *head) != NULL) {
		*head = b->next;
		free(b);
	}
}

void
buf_pool_fini(struct buf_pool *p)
{
	list_free(&p->free);
	list_free(&p->big);
	p->nfree = p->nbig = 0;
}

static struct buf *
take(struct buf_pool *p, struct buf **head, size_t *n, uint32_t cap)
{
	struct buf *b;

	if ((b = *head) != NULL) {
		*head = b->next;
		(*n)--;
	} else if ((b = malloc(sizeof(*b) + cap)) == NULL) {
		errno = ENOMEM;
		return NULL;
	} else
		b->cap = cap;
	b->next = NULL;
	b->off = b->len = 0;
	p->out++;
	return b;
}

struct buf *
buf_get(struct buf_pool *p)
{
	return take(p, &p->free, &p->nfree, BUF_SIZE);
}

struct buf *
buf_get_big(struct buf_pool *p)
{
	return take(p, &p->big, &p->nbig, BUF_BIG);
}

void
buf_put(struct buf_pool *p, struct buf *b)
{
	struct buf	**head;
	size_t		 *n, max;

	if (b == NULL)
		return;
	p->out--;
	if (b->cap == BUF_BIG) {
		head = &p->big;
		n = &p->nbig;
		max = p->max_big;
	} else {
		head = &p->free;
		n = &p->nfree;
		max = p->max_free;
	}
	if (*n >= max) {
		free(b);
		return;
	}
	b->next = *head;
	*head = b;
	(*n)++;
}
