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

struct backend;

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
};

/* Build a frontend from its config (backend already created). */
struct frontend	*frontend_new(const struct conf_frontend *, struct backend *);
void		 frontend_free(struct frontend *);

#endif /* SHOAL_FRONTEND_H */
