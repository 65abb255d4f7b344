/*
 * events.c - the event timeline (events.h): a ring of EVENTS_MAX.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "events.h"

static struct event	 ring[EVENTS_MAX];
static size_t		 first, count;
static uint64_t		 seq;

static const char *const kind_names[EV_KIND_MAX] = {
	[EV_KIND_STATE] = "state",
	[EV_KIND_TABLE] = "table",
	[EV_KIND_ANNOUNCE] = "announce",
	[EV_KIND_ADMIN] = "admin",
	[EV_KIND_RELOAD] = "reload",
	[EV_KIND_SCALE] = "scale",
	[EV_KIND_HOOK] = "hook",
	[EV_KIND_FAULT] = "fault",
};

const char *
events_kind_name(enum events_kind k)
{
	return (size_t)k < EV_KIND_MAX ? kind_names[k] : "?";
}

void
events_add(enum events_kind kind, const char *backend, const char *server,
    const char *fmt, ...)
{
	struct event	*e;
	struct timespec	 ts;
	va_list		 ap;

	if (count < EVENTS_MAX)
		e = &ring[(first + count++) % EVENTS_MAX];
	else {
		e = &ring[first];
		first = (first + 1) % EVENTS_MAX;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	e->seq = ++seq;
	e->at = (double)ts.tv_sec + ts.tv_nsec / 1e9;
	e->kind = kind;
	snprintf(e->backend, sizeof(e->backend), "%s", backend ? backend : "");
	snprintf(e->server, sizeof(e->server), "%s", server ? server : "");
	va_start(ap, fmt);
	vsnprintf(e->text, sizeof(e->text), fmt, ap);
	va_end(ap);
	/* Printable only: the text goes to JSON, HTML and terminals. */
	for (char *p = e->text; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
			*p = '?';
}

size_t
events_count(void)
{
	return count;
}

const struct event *
events_get(size_t i)
{
	return i < count ? &ring[(first + i) % EVENTS_MAX] : NULL;
}

void
events_reset(void)
{
	first = count = 0;
	seq = 0;
}
