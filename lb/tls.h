/*
 * tls.h - TLS on the data path: what a frontend terminates with, what a
 * backend originates with, how handshakes are counted, and the ticket
 * keys every worker shares.
 *
 * The control loop builds a struct tls_fe per frontend with tls = yes and
 * a struct tls_be per backend with tls = yes (from tlsctx.h, all or
 * nothing: a bad file refuses the start or the reload), publishes them
 * on the frontend and backend, and retires the ones they replace through
 * qsbr_defer(): a worker that loaded a pointer may still call SSL_new()
 * on it until its next quiescent point. An SSL made from a context holds
 * its own reference, so running sessions keep the certificates they
 * started with across any number of reloads.
 *
 * Resumption is by session tickets only (tlsctx.h): one key ring for the
 * process, shared by every frontend and worker, rotated by a timer on
 * the control loop every [global] tls_ticket_rotate.
 */
#ifndef SHOAL_TLS_H
#define SHOAL_TLS_H

#include <ev.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "conf.h"

/* Why a handshake failed. */
enum tls_fail {
	TLS_FAIL_TIMEOUT = 0,	/* not over within the deadline */
	TLS_FAIL_CLOSED,	/* the peer closed or reset during it */
	TLS_FAIL_NOT_TLS,	/* the peer does not speak TLS */
	TLS_FAIL_VERSION,	/* no protocol version in common */
	TLS_FAIL_CIPHER,	/* no cipher, group or signature in common */
	TLS_FAIL_ALERT,		/* the peer refused us with an alert (our
				   certificate: unknown CA, bad, expired) */
	TLS_FAIL_VERIFY,	/* origination: the server's certificate
				   did not verify */
	TLS_FAIL_OTHER,
	TLS_FAIL_MAX,
};

/* Handshakes of one frontend (termination) or one backend (origination).
 * Workers add, relaxed; the stats read. */
struct tls_counters {
	_Atomic uint64_t	 ok;		/* completed */
	_Atomic uint64_t	 resumed;	/* of those, resumed */
	_Atomic uint64_t	 v12;		/* of those, TLS 1.2 */
	_Atomic uint64_t	 v13;		/* of those, TLS 1.3 */
	_Atomic uint64_t	 ktls;		/* of those, kernel TLS sends */
	_Atomic uint64_t	 fail[TLS_FAIL_MAX];
};

/* A frontend's termination: published on it while tls = yes. */
struct tls_fe {
	struct tlsctx_server	*srv;		/* certificates, tickets */
	SSL_CTX			*ctx;		/* srv's */
	uint32_t		 timeout_handshake_ms;
};

/* A backend's origination: published on it while tls = yes. */
struct tls_be {
	SSL_CTX			*ctx;
	uint64_t		 gen;		/* sessions cached under another
						   tls_be are not offered */
	char			 sni[254];	/* "" = the client's SNI if the
						   frontend terminated, else
						   none */
};

/* Build what frontend cf (backend cb) of conf asks for: 0 with *out NULL
 * if it has no tls, 0 with *out set, or -1 with "FILE:LINE: frontend X:
 * FILE: reason" in err. Control loop; at -t too (no ticket keys then). */
int		 tls_fe_new(const struct conf *, const struct conf_frontend *cf,
		    struct tls_fe **out, char err[CONF_ERR_MAX]);
int		 tls_be_new(const struct conf *, const struct conf_backend *cb,
		    struct tls_be **out, char err[CONF_ERR_MAX]);
/* Free at once (never published, or at exit); NULL accepted. */
void		 tls_fe_free(struct tls_fe *);
void		 tls_be_free(struct tls_be *);
/* Free once no worker can still hold the pointer; NULL accepted. */
void		 tls_fe_retire(struct tls_fe *);
void		 tls_be_retire(struct tls_be *);

struct server;

/* Origination: mark ssl as a connection to srv, and offer the session
 * srv last gave under the same tls_be (resumption). A new resumable
 * session srv gives (TLS 1.3: after the handshake) replaces it. */
void		 tls_be_ssl_prepare(const struct tls_be *, SSL *,
		    struct server *srv);

/* Check every frontend's and backend's files (-t, and before a start).
 * 0, or -1 with err. */
int		 tls_check_conf(const struct conf *, char err[CONF_ERR_MAX]);

/* Ticket keys: made by tls_start() (before the first tls_fe_new() that
 * should resume sessions), rotated every rotate_ms (0: never) from a
 * timer on loop; tls_set_rotate() follows a reload. tls_stop() stops the
 * timer (before the loop goes); tls_fini() frees the keys once no
 * context is left. */
void		 tls_start(struct ev_loop *loop, uint32_t rotate_ms);
void		 tls_set_rotate(uint32_t rotate_ms);
void		 tls_stop(void);
void		 tls_fini(void);

/* [global] ktls: contexts built from now on ask for kernel TLS. */
void		 tls_set_ktls(bool);

/* After SSL_do_handshake() failed with SSL_get_error() = sslerr (errno
 * err for SSL_ERROR_SYSCALL): why. Reads the thread's error queue. */
enum tls_fail	 tls_fail_reason(SSL *, int sslerr, int err);
const char	*tls_fail_name(enum tls_fail);

/* A handshake is over on ssl: count it (version, resumption, kTLS). */
void		 tls_count_ok(struct tls_counters *, SSL *);

/* "1.2", "1.3" (or OpenSSL's name of another) for logs. */
const char	*tls_version_name(const SSL *);

#endif /* SHOAL_TLS_H */
