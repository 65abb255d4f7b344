/*
 * listen.h - where the frontends' listening sockets come from.
 *
 * A bind address gets inherited sockets when there are some for it, else
 * new ones. Sockets are inherited, at start only, from systemd socket
 * activation ($LISTEN_FDS, in-tree like notify.c: no libsystemd) or from a
 * running shoal over its admin unix socket (shoal -x PATH, "get listeners",
 * SCM_RIGHTS). Workers share an inherited socket through dup(2): one accept
 * queue that outlives this process, instead of one SO_REUSEPORT socket per
 * worker (a reuseport group also needs the same uid, and systemd binds as
 * root for a service that may run as another user).
 */
#ifndef SHOAL_LISTEN_H
#define SHOAL_LISTEN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "conf.h"

#define LISTEN_FDS_START	3	/* systemd's first passed fd */
#define LISTEN_FDS_MAX		1024	/* more is refused */
#define LISTEN_NAME_MAX		256	/* FileDescriptorName= is shorter */
#define LISTEN_PER_WORKER_MAX	16	/* sockets one worker takes per bind */

/*
 * Parse systemd's variables (pure: no fd is touched). pid is $LISTEN_PID,
 * fds $LISTEN_FDS, names $LISTEN_FDNAMES (colon-separated, may be NULL),
 * self our pid. Returns the number of fds passed to us (0: none, or meant
 * for another process), or -1 with a message in err. names[i] (up to
 * LISTEN_NAME_MAX - 1 bytes) receives fd LISTEN_FDS_START + i's name, ""
 * when not given; names may be NULL; at most max are filled.
 */
int	listen_env_parse(const char *pid, const char *fds, const char *names,
	    pid_t self, char (*names_out)[LISTEN_NAME_MAX], int max,
	    char *err, size_t errlen);

/*
 * Take systemd's sockets: each must be a listening TCP socket (IPv4 or
 * IPv6); it is made non-blocking and close-on-exec. A socket named
 * (FileDescriptorName=) after a frontend of conf serves only that
 * frontend; other names are ignored. The variables are removed from the
 * environment. 0 (taken or none), -1 with err.
 */
int	listen_from_systemd(const struct conf *, char *err, size_t errlen);

/*
 * Take the frontend sockets of the shoal whose admin socket is at path
 * ("get listeners"); the connection stays open for listen_handover_stop().
 * 0 or -1 with err.
 */
int	listen_from_shoal(const char *path, char *err, size_t errlen);

/* Tell the shoal the sockets came from to stop ("stop": it stops
 * accepting, releases its ports and drains for its grace); a no-op
 * without listen_from_shoal(). 0, or -1 (logged). */
int	listen_handover_stop(void);

/*
 * The sockets for bind a of frontend fe on worker w of nworkers: dups of
 * the inherited ones at a when there are some (spread over the workers so
 * that each is served), else one new SO_REUSEPORT socket. Up to max fds
 * (max >= LISTEN_PER_WORKER_MAX when sockets may be inherited) go to fds,
 * owned by the caller. Returns their number, or -1 with errno.
 */
int	listen_obtain(const struct conf_addr *a, const char *fe, int w,
	    int nworkers, int backlog, int *fds, int max);

/*
 * After every bind took its sockets: close the inherited ones. A systemd
 * socket no bind took is an error (-1, FILE:LINE-less message in err); a
 * handed-over socket the new config does not bind is closed and logged.
 */
int	listen_inherited_done(char *err, size_t errlen);

/* Sockets to hand over: dups of this process's listening TCP sockets
 * whose address is in binds (one per socket, not per fd). fds[] and
 * which[] (index into binds) up to max; returns the count, -1 errno. */
int	listen_export(const struct conf_addr *const *binds, size_t nbinds,
	    int *fds, size_t *which, int max);

#endif /* SHOAL_LISTEN_H */
