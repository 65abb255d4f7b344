/*
 * admin.h - the admin socket: a unix socket ([admin] socket) and an
 * optional TCP listener ([admin] bind) taking one command per line and
 * answering each with text that ends with an empty line. shoalctl(1) is
 * its client; `help` lists the commands (docs/operations.md describes
 * them).
 *
 * Runs in the control loop and never blocks it: non-blocking sockets,
 * bounded input line, bounded pending output per client (reading pauses
 * while an answer waits), at most ADMIN_CLIENTS_MAX clients, idle timeout.
 * The TCP listener has no authentication: bind it where only operators
 * reach it.
 *
 * Also included by shoalctl, which links nothing of the daemon: keep this
 * header free of libev and of the control loop's types.
 */
#ifndef SHOAL_ADMIN_H
#define SHOAL_ADMIN_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ADMIN_LINE_MAX		4096	/* bytes per command line, with LF */
#define ADMIN_CLIENTS_MAX	16	/* concurrent admin clients */
#define ADMIN_OUT_HIGH		65536	/* stop reading above this backlog */
#define ADMIN_SOCKET_NAME	"admin.sock"
#define ADMIN_SOCKET_DEFAULT	"/run/shoal/admin.sock"

struct conf;
struct control;

/*
 * The unix socket path when [admin] socket is not given (""):
 * $RUNTIME_DIRECTORY/admin.sock (the first directory if systemd lists
 * several, separated by ':'), else /run/shoal/admin.sock. Written to buf
 * (size at least 108, sizeof(sun_path)); returns buf, or NULL if the
 * result would not fit.
 */
static inline char *
admin_default_socket(char *buf, size_t len)
{
	const char	*rd = getenv("RUNTIME_DIRECTORY");
	size_t		 n;
	int		 w;

	if (rd == NULL || rd[0] != '/') {
		w = snprintf(buf, len, "%s", ADMIN_SOCKET_DEFAULT);
		return w >= 0 && (size_t)w < len ? buf : NULL;
	}
	n = strcspn(rd, ":");
	while (n > 1 && rd[n - 1] == '/')
		n--;
	w = snprintf(buf, len, "%.*s/%s", (int)n, rd, ADMIN_SOCKET_NAME);
	return w >= 0 && (size_t)w < len ? buf : NULL;
}

/*
 * Open the admin listeners of c->conf->admin when the [admin] section is
 * present (nothing otherwise). The control loop must outlive
 * admin_stop(). Returns 0, or -1 (logged) when a socket named in the
 * config cannot be opened: the TCP bind, an explicit `socket`, or a live
 * socket at the path (another shoal answers there). A failure at the
 * default path (no `socket` key: e.g. /run/shoal not writable for this
 * user) is a warning and shoal runs without the unix socket. After -1
 * nothing is left open.
 */
int	admin_start(struct control *);

/*
 * Reload hook: follow the [admin] section of nc. Listeners whose address
 * stays are kept; changed ones are opened first and the old ones closed
 * only when that worked (else -1, logged, previous listeners kept).
 * Connected clients stay.
 */
int	admin_reload(const struct conf *nc);

/* Close the listeners (removing our socket file) and every client. */
void	admin_stop(void);

/* Stop hook: close the listeners (the socket file goes if it is still
 * ours); connected clients stay until the process exits. */
void	admin_stop_listening(void);

#endif /* SHOAL_ADMIN_H */
