/*
 * clientid.h - who the client is, and whether it may come in: a
 * frontend's access lists (allow, deny), the PROXY protocol header that a
 * trusted balancer in front sends (accept_proxy, accept_proxy_from) and
 * the per-source limits (maxconn_per_source, rate_per_source).
 *
 *   accept ──> peer in accept_proxy_from? ──no──> PF
 *      │              │ yes
 *      │        read the header (timeout_proxy) ──bad──> CP, late: cP
 *      │              │ client = the header's source (LOCAL: the peer)
 *      └──────────────┴──> deny / allow ──> PA
 *                               │
 *                      maxconn_per_source ──> PL, rate_per_source ──> PR
 *                               │
 *                         pick a server
 *
 * A frontend's policy is immutable once published: workers read it with
 * no lock. A reload that changes it builds a new one and retires the old
 * (qsbr_defer); the sessions counted in the old one's per-source table
 * give their count back to it, and it is freed after the last one ended.
 */
#ifndef SHOAL_CLIENTID_H
#define SHOAL_CLIENTID_H

#include <sys/socket.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clienthello.h"
#include "proxyproto.h"

struct backend;
struct cidr_set;
struct conf_frontend;
struct srclimit;

struct client_policy {
	struct cidr_set		*allow;		/* NULL: everyone */
	struct cidr_set		*deny;		/* NULL: nobody */
	struct cidr_set		*proxy_from;	/* NULL: no PROXY header */
	uint32_t		 timeout_proxy_ms;
	struct srclimit		*limit;		/* NULL: no per-source cap */
	_Atomic uint32_t	 held;		/* sessions counted in limit */
};

/* Why a client was refused: the session log's termination codes. */
enum client_verdict {
	CLIENT_OK = 0,
	CLIENT_DENIED,		/* PA: deny matched, or allow did not */
	CLIENT_OVER_CONN,	/* PL: maxconn_per_source */
	CLIENT_OVER_RATE,	/* PR: rate_per_source */
};

/* Whether the frontend's config asks for a policy at all. */
bool		 client_policy_wanted(const struct conf_frontend *);

/*
 * The policy of a frontend's config, its per-source table sized for
 * capacity sources (srclimit_capacity()). NULL with errno (ENOMEM).
 */
struct client_policy *client_policy_new(const struct conf_frontend *,
		    size_t capacity);

/* Free a policy no thread uses any more; NULL is fine. */
void		 client_policy_free(struct client_policy *);

/* Whether two frontend configs ask for the same policy (a reload that
 * keeps it keeps the per-source counts too). */
bool		 client_policy_same(const struct conf_frontend *,
		    const struct conf_frontend *);

/*
 * Retire a policy a frontend no longer publishes: freed once every worker
 * passed a quiescent point and no session holds a count in it. Control
 * loop only.
 */
void		 client_policy_retire(struct client_policy *);

/* Whether peer may send a PROXY header (is in accept_proxy_from). */
bool		 client_proxy_trusted(const struct client_policy *,
		    const struct sockaddr *peer);

/*
 * Admit a client from sa at now_us (monotonic): access lists, then the
 * per-source limits. On CLIENT_OK, *held tells whether it was counted in
 * the per-source table: then client_release() must follow at its end.
 */
enum client_verdict client_admit(struct client_policy *,
		    const struct sockaddr *sa, uint64_t now_us, bool *held);

/* The end of a session client_admit() counted (*held true). */
void		 client_release(struct client_policy *,
		    const struct sockaddr *sa);

/* Reading a PROXY header from a non-blocking socket, a segment at a time. */
struct proxy_read {
	size_t		have;			/* header bytes consumed */
	uint8_t		buf[PROXYPROTO_MAX];
};

enum {
	PROXY_READ_DONE,	/* *h is the header; the app's bytes follow */
	PROXY_READ_AGAIN,	/* incomplete: wait for the socket */
	PROXY_READ_BAD,		/* never a header (*why), or too long */
	PROXY_READ_CLOSED,	/* the peer closed or failed first (errno) */
};

/*
 * Read what the socket holds towards the header: peek, decode, and take
 * from the socket only the header's bytes, so that the application's
 * bytes stay for the relay. Returns one of the PROXY_READ_* answers.
 */
int		 client_proxy_read(int fd, struct proxy_read *,
		    struct proxyproto_hdr *h, const char **why);

/*
 * Where a TLS client goes by the server name of its ClientHello
 * (`[frontend] route = PATTERN BACKEND`, first match wins): immutable once
 * published; the control loop fills be[] (the backends of the table
 * current at publication) and swaps the whole set on reload.
 */
struct sni_routes {
	size_t			 n;
	uint32_t		 timeout_preread_ms;
	struct clienthello_route *pat;		/* [n] */
	struct backend		**be;		/* [n] */
	const char		**backend_name;	/* [n], into the conf */
};

/* The routes of a frontend's config, be[] unset; NULL with errno ENOMEM,
 * or with errno 0 when it has none. */
struct sni_routes *sni_routes_new(const struct conf_frontend *);
void		 sni_routes_free(struct sni_routes *);
/* Free once every worker passed a quiescent point (control loop). */
void		 sni_routes_retire(struct sni_routes *);

#endif /* SHOAL_CLIENTID_H */
