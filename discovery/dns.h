/*
 * dns.h - servers found in DNS: `[backend] resolve = NAME:PORT` (dns.c).
 * Control loop only.
 */
#ifndef SHOAL_DNS_H
#define SHOAL_DNS_H

#include <stdint.h>

#include <ev.h>

#include "conf.h"
#include "discovery_view.h"
#include "server.h"

/* Start resolving for every backend with `resolve`. 0, or -1 (logged). */
int	dns_start(struct ev_loop *, struct backend_list *);

/* Reload commit (after the backends took their new settings): new names
 * start, changed ones restart, removed ones take their servers away. */
int	dns_reload(const struct conf *);

/* Stop every watch (the servers stay in the table). */
void	dns_stop(void);

/* What the stats page shows (lb/ knows DNS discovery only through it). */
extern const struct dns_view dns_view;

#endif /* SHOAL_DNS_H */
