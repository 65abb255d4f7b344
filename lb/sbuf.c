/*
 * sbuf.c - the growing string buffer.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sbuf.h"

void
sbuf_init(struct sbuf *b)
{
	b->data = NULL;
	b->len = b->cap = 0;
	b->failed = false;
}

void
sbuf_free(struct sbuf *b)
{
	free(b->data);
	sbuf_init(b);
}

void
sbuf_reset(struct sbuf *b)
{
	b->len = 0;
	if (b->data != NULL)
		b->data[0] = '\0';
}

static bool
grow(struct sbuf *b, size_t more)
{
	size_t	 cap;
	char	*n;

	if (b->failed)
		return false;
	if (b->len + more + 1 <= b->cap)
		return true;
	cap = b->cap ? b->cap : 256;
	while (cap < b->len + more + 1)
		cap *= 2;
	if ((n = realloc(b->data, cap)) == NULL) {
		b->failed = true;
		return false;
	}
	b->data = n;
	b->cap = cap;
	return true;
}

void
sbuf_put(struct sbuf *b, const void *p, size_t n)
{
	if (!grow(b, n))
		return;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void
sbuf_puts(struct sbuf *b, const char *s)
{
	sbuf_put(b, s, strlen(s));
}

void
sbuf_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list	ap;
	int	n;

	if (!grow(b, 64))
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->failed = true;
		return;
	}
	if ((size_t)n >= b->cap - b->len) {
		if (!grow(b, (size_t)n))
			return;
		va_start(ap, fmt);
		vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t)n;
}

void
sbuf_json_str(struct sbuf *b, const char *s)
{
	sbuf_put(b, "\"", 1);
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		switch (*c) {
		case '"':
			sbuf_put(b, "\\\"", 2);
			break;
		case '\\':
			sbuf_put(b, "\\\\", 2);
			break;
		case '\n':
			sbuf_put(b, "\\n", 2);
			break;
		case '\r':
			sbuf_put(b, "\\r", 2);
			break;
		case '\t':
			sbuf_put(b, "\\t", 2);
			break;
		default:
			if (*c < 0x20 || *c == 0x7f)
				sbuf_printf(b, "\\u%04x", *c);
			else
				sbuf_put(b, c, 1);
		}
	}
	sbuf_put(b, "\"", 1);
}

void
sbuf_html(struct sbuf *b, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '&':
			sbuf_puts(b, "&amp;");
			break;
		case '<':
			sbuf_puts(b, "&lt;");
			break;
		case '>':
			sbuf_puts(b, "&gt;");
			break;
		case '"':
			sbuf_puts(b, "&quot;");
			break;
		case '\'':
			sbuf_puts(b, "&#39;");
			break;
		default:
			sbuf_put(b, s, 1);
		}
	}
}

void
sbuf_prom_label(struct sbuf *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\')
			sbuf_puts(b, "\\\\");
		else if (*s == '"')
			sbuf_puts(b, "\\\"");
		else if (*s == '\n')
			sbuf_puts(b, "\\n");
		else
			sbuf_put(b, s, 1);
	}
}
