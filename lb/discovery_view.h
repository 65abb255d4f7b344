/*
 * discovery_view.h - what the stats page and the admin socket show about
 * discovery: its verdict counters and its announcement table.
 *
 * lb/ knows discovery only through this view: discovery/ provides one
 * (receiver.h: discovery_view) and lb/main.c hands it to the control
 * loop (struct control's `discovery`). Control loop only.
 */
#ifndef SHOAL_DISCOVERY_VIEW_H
#define SHOAL_DISCOVERY_VIEW_H

#include <stddef.h>
#include <stdint.h>

#define DISCOVERY_VERDICTS_MAX	16	/* room for the counters */

/* One entry of the announcement table. */
struct discovery_entry_info {
	const char	*backend;	/* pool = backend name */
	const char	*name;		/* "IP:PORT", the server's name */
	const char	*label;		/* label TLV, "" if none */
	const char	*state;		/* "up", "draining" or "gone" */
	uint64_t	 instance;	/* current announcer instance */
	uint32_t	 seq;		/* last accepted seq */
	uint32_t	 ttl_ms;	/* clamped ttl of the last datagram */
	double		 age_s;		/* since the last accepted datagram */
	double		 expires_s;	/* until expiry (gone: until forgotten) */
};

struct discovery_view {
	/* Verdicts counted, at most DISCOVERY_VERDICTS_MAX; verdict 0 is
	 * "ok", the others are refusals. */
	int		  nverdicts;
	const char	*(*verdict_name)(int);
	/* The counters since start, [nverdicts]. */
	void		 (*counters)(uint64_t *out);
	/*
	 * Call fn once per entry (live servers first, then tombstones),
	 * with arg. The info and its strings are valid during the call
	 * only; fn must not change the server table.
	 */
	void		 (*foreach)(void (*fn)(const struct discovery_entry_info *,
			    void *), void *arg);
};

/* One `[backend] resolve` watch (discovery/dns.c). */
struct dns_watch_info {
	const char	*backend;
	const char	*name;		/* the name resolved */
	size_t		 servers;	/* servers it holds in the table now */
	uint64_t	 queries;	/* asked */
	uint64_t	 answers;	/* with addresses */
	uint64_t	 empty;		/* no such name, or no address */
	uint64_t	 failures;	/* timeout, SERVFAIL, refused, garbage */
	unsigned	 ttl;		/* of the last answer, s */
	const char	*error;		/* the failure now, "" when answering */
};

/* DNS discovery, as the stats page sees it (provided by discovery/dns.c). */
struct dns_view {
	/* fn once per watch; info valid during the call only. */
	void		 (*foreach)(void (*fn)(const struct dns_watch_info *,
			    void *), void *arg);
};

#endif /* SHOAL_DISCOVERY_VIEW_H */
