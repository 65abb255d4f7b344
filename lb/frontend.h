/*
 * frontend.h - a frontend: where clients arrive and which backend they go to.
 *
 * Built by the control loop (worker.c), read by workers and their sessions.
 */
#ifndef SHOAL_FRONTEND_H
#define SHOAL_FRONTEND_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "tls.h"

struct backend;
struct client_policy;
struct sni_routes;

/* A frontend: shared by every worker, written by the control loop. */
struct frontend {
	char			 name[CONF_NAME_MAX];
	struct conf_addr	*binds;		/* [nbinds], owned */
	size_t			 nbinds;
	_Atomic(struct backend *) backend;	/* where sessions go */
	_Atomic uint32_t	 timeout_client_ms;
	_Atomic int		 maxconn;	/* 0 = only the global cap */
	_Atomic uint32_t	 cur;		/* active sessions */
	_Atomic uint64_t	 total;		/* sessions accepted */
	/* Access lists, PROXY header, per-source limits (clientid.h);
	 * NULL: none of them. Swapped by a reload that changes them. */
	_Atomic(struct client_policy *) policy;
	/* Clients refused before any server was touched, by reason. */
	_Atomic uint64_t	 refused_acl;		/* PA: allow/deny */
	_Atomic uint64_t	 refused_proxy_from;	/* PF: untrusted peer */
	_Atomic uint64_t	 refused_proxy_bad;	/* CP: bad/no header */
	_Atomic uint64_t	 refused_proxy_timeout;	/* cP: header too late */
	_Atomic uint64_t	 refused_conn_source;	/* PL: maxconn_per_source */
	_Atomic uint64_t	 refused_rate_source;	/* PR: rate_per_source */
	/* route = PATTERN BACKEND by SNI (clientid.h); NULL: none. */
	_Atomic(struct sni_routes *) routes;
	/* Where prereads went: a route, or the default backend because... */
	_Atomic uint64_t	 sni_routed;		/* a route matched */
	_Atomic uint64_t	 sni_unmatched;		/* SNI, no route */
	_Atomic uint64_t	 sni_missing;		/* TLS, no SNI */
	_Atomic uint64_t	 preread_not_tls;	/* not a TLS ClientHello */
	_Atomic uint64_t	 preread_timeout;	/* none in timeout_preread */
	/* tls = yes: certificates and handshake deadline (tls.h); NULL:
	 * clients speak plain TCP. Swapped by every reload. */
	_Atomic(struct tls_fe *) tls;
	struct tls_counters	 tls_stats;		/* client handshakes */
};

/* Build a frontend from its config (backend already created), with its
 * client policy if it asks for one (per-source tables sized for
 * src_capacity sources). */
struct frontend	*frontend_new(const struct conf_frontend *, struct backend *,
		    size_t src_capacity);
/* Free it and its policy (no worker may use them any more). */
void		 frontend_free(struct frontend *);

#endif /* SHOAL_FRONTEND_H */
