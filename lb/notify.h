/*
 * notify.h - the systemd notify protocol, in-tree: a datagram of
 * "KEY=VALUE\n" lines to the unix socket named by $NOTIFY_SOCKET ('@' for
 * the abstract namespace). Without $NOTIFY_SOCKET every call is a no-op.
 */
#ifndef SHOAL_NOTIFY_H
#define SHOAL_NOTIFY_H

#include <stdint.h>

/* Read the environment. 0, or -1 (errno) if NOTIFY_SOCKET is unusable. */
int		 notify_init(void);

/* Send one message, e.g. notify_send("READY=1\nSTATUS=%s", s). */
void		 notify_send(const char *fmt, ...)
		    __attribute__((format(printf, 1, 2)));

/* $WATCHDOG_USEC when it applies to this process, else 0. */
uint64_t	 notify_watchdog_usec(void);

/* CLOCK_MONOTONIC in microseconds (for RELOADING=1 MONOTONIC_USEC=). */
uint64_t	 notify_monotonic_usec(void);

void		 notify_fini(void);

#endif /* SHOAL_NOTIFY_H */
