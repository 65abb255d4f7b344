/*
 * receiver.h - shoal's side of discovery: the announcement socket, policy,
 * replay protection, tombstones, TTL expiry and the stall guard.
 *
 * Runs in the control loop only. Announced servers join their backend
 * through the table's door (server_join(..., SRC_ANNOUNCED)) and leave
 * through server_leave(), like any other server: health follows through
 * the table, and sessions in flight keep their reference and finish
 * untouched.
 */
#ifndef SHOAL_RECEIVER_H
#define SHOAL_RECEIVER_H

#include <ev.h>
#include <stdint.h>
#include <sys/socket.h>

#include "codec.h"
#include "conf.h"
#include "discovery_view.h"
#include "server.h"

#define DISC_BATCH	64	/* datagrams read per recvmmsg */
#define DISC_TTL_MIN	500	/* ms: announced ttl is clamped to this... */
#define DISC_TTL_MAX	60000	/* ...and this */
#define DISC_TICK_MS	100	/* expiry timer period */
#define DISC_TOMB_MAX	4096	/* tombstones kept (oldest dropped first) */

/*
 * Start discovery: load the key file, open and bind the socket, join the
 * group, start the watchers. backends is the server table (borrowed for
 * the whole run); conf gives the frontends' listen addresses (announcing
 * one of them is refused) and must outlive discovery_stop(). When the
 * [discovery] section is absent, or no key is configured and auth is not
 * none, the listener stays off (logged) and 0 is returned. With loop NULL
 * no socket or timer is made: unit tests drive discovery_input() and
 * discovery_tick() themselves. Returns 0, or -1 with errno and the reason
 * logged (bad key file, cannot bind, unknown interface...).
 */
int	discovery_start(struct ev_loop *loop, const struct conf_discovery *cd,
	    struct backend_list *backends, const struct conf *conf);

/*
 * What discovery_start() would refuse, short of opening the socket (for
 * shoal -t): the key file loads (exists, regular, mode 0600, valid), the
 * interface exists. 0, or -1 with "FILE:LINE: message" in err (the line
 * of the [discovery] section).
 */
int	discovery_check(const struct conf *conf, char *err, size_t errlen);

/* Stop the watchers, close the socket, forget every entry (the announced
 * servers stay in the table: the table is torn down after this). */
void	discovery_stop(void);

/*
 * A reload, in two steps (control loop). discovery_reload_prepare()
 * checks and makes everything the new configuration needs, changing
 * nothing: it re-reads the key file (keys rotate without a restart) and
 * opens a new socket if the group, port or interface changed. On any
 * error (key file missing, unreadable, group-readable or bad; no key and
 * auth not none; cannot bind) it returns -1 with the reason in err, and
 * the reload is refused. discovery_reload() then takes what was prepared
 * (keys, allow list, realm, policy, socket); entries and counters stay.
 * discovery_reload_abort() drops it when another part refused the
 * reload. The listen addresses always follow nc, which must live until
 * the next call or discovery_stop(). discovery_reload() returns -1 when
 * it keeps its settings ([discovery] removed: logged).
 */
int	discovery_reload_prepare(const struct conf *nc,
	    char err[CONF_ERR_MAX]);
int	discovery_reload(const struct conf *nc);
void	discovery_reload_abort(void);

/* What stats and the admin socket show: these counters and entries
 * (lb/main.c hands it to the control loop). */
extern const struct discovery_view discovery_view;

/* The verdict counters since start, indexed by enum disc_verdict. */
void	discovery_counters(uint64_t out[DISC_NVERDICTS]);

/*
 * Call fn once per entry (live servers first, then tombstones), with arg.
 * The info and its strings are valid during the call only; fn must not
 * change the server table.
 */
void	discovery_foreach(void (*fn)(const struct discovery_entry_info *,
	    void *), void *arg);

/*
 * Handle one datagram of n bytes from src, as the socket callback does.
 * Returns its verdict (already counted). For tests and the fuzzer.
 */
enum disc_verdict discovery_input(const uint8_t *buf, size_t n,
	    const struct sockaddr *src, socklen_t srclen);

/* Run the expiry and stall checks now, as the timer does. For tests. */
void	discovery_tick(void);

/*
 * Tests: replace the clocks (monotonic and wall, in ms) by fixed values;
 * both 0 restores the real clocks.
 */
void	discovery_set_clock(uint64_t mono_ms, uint64_t wall_ms);

#endif /* SHOAL_RECEIVER_H */
