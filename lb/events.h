/*
 * events.h - the event timeline: the last EVENTS_MAX things that happened
 * to the table and to shoal itself (server state changes, servers joining
 * and leaving, announcements that changed something, admin actions,
 * reloads, scale decisions and hook runs), newest last. Shown in
 * /stats.json ("events"), on the stats page and by `shoalctl show events`.
 *
 * Control loop only (no lock): every writer of the table runs there.
 */
#ifndef SHOAL_EVENTS_H
#define SHOAL_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#define EVENTS_MAX	256	/* kept */
#define EVENTS_TEXT	200	/* bytes of text, NUL included */

enum events_kind {
	EV_KIND_STATE = 0,	/* health, admin state, draining */
	EV_KIND_TABLE,		/* a server joined or left the table */
	EV_KIND_ANNOUNCE,	/* an announcement changed a server */
	EV_KIND_ADMIN,		/* a command on the admin socket */
	EV_KIND_RELOAD,		/* a reload, done or refused */
	EV_KIND_SCALE,		/* a scale condition started or stopped
				   holding */
	EV_KIND_HOOK,		/* a scale hook started or ended */
	EV_KIND_FAULT,		/* fault injection set or cleared */
	EV_KIND_MAX,
};

struct event {
	uint64_t		 seq;		/* 1, 2, ... since start */
	double			 at;		/* wall clock, seconds */
	enum events_kind	 kind;
	char			 backend[64];	/* "" = none */
	char			 server[64];	/* "" = none */
	char			 text[EVENTS_TEXT];
};

/* Record one event (backend, server may be NULL); the text is printf'd
 * and cut to EVENTS_TEXT - 1 bytes. */
void		 events_add(enum events_kind, const char *backend,
		    const char *server, const char *fmt, ...)
		    __attribute__((format(printf, 4, 5)));

/* Events kept now (at most EVENTS_MAX). */
size_t		 events_count(void);

/* The i-th kept event, oldest first (i < events_count()), or NULL. */
const struct event *events_get(size_t i);

/* "state", "table", "announce", "admin", "reload", "scale", "hook",
 * "fault". */
const char	*events_kind_name(enum events_kind);

/* Forget every event (tests). */
void		 events_reset(void);

#endif /* SHOAL_EVENTS_H */
