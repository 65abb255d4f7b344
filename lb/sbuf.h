/*
 * sbuf.h - a growing string buffer for building replies (stats pages,
 * admin answers). Allocation failure is sticky: sbuf_failed() tells, and
 * every later append is a no-op, so callers check once at the end.
 */
#ifndef SHOAL_SBUF_H
#define SHOAL_SBUF_H

#include <stdbool.h>
#include <stddef.h>

struct sbuf {
	char	*data;		/* NUL-terminated while not failed */
	size_t	 len;		/* bytes, without the NUL */
	size_t	 cap;		/* allocated */
	bool	 failed;	/* an allocation failed */
};

void	sbuf_init(struct sbuf *);
void	sbuf_free(struct sbuf *);		/* then empty again */
void	sbuf_reset(struct sbuf *);		/* len = 0, keeps memory */
void	sbuf_put(struct sbuf *, const void *, size_t);
void	sbuf_puts(struct sbuf *, const char *);
void	sbuf_printf(struct sbuf *, const char *, ...)
	    __attribute__((format(printf, 2, 3)));
/* A JSON string literal: quotes, escapes, control characters as \uXXXX. */
void	sbuf_json_str(struct sbuf *, const char *);
/* Text with & < > " ' escaped for HTML. */
void	sbuf_html(struct sbuf *, const char *);
/* A Prometheus label value: \ " and newline escaped. */
void	sbuf_prom_label(struct sbuf *, const char *);

static inline bool
sbuf_failed(const struct sbuf *b)
{
	return b->failed;
}

#endif /* SHOAL_SBUF_H */
