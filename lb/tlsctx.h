/*
 * tlsctx.h - OpenSSL 3 contexts for TLS termination (server side) and
 * origination (client side), built from configuration all or nothing.
 *
 * Sharing: one SSL_CTX serves every worker thread. It is built, then
 * never changed; OpenSSL locks its own shared state (reference counts,
 * the X509_STORE), so workers call SSL_new() on it concurrently. Certs and
 * keys are held by the tlsctx_server (reference counted by OpenSSL) and
 * installed per connection from the certificate callback, which only
 * reads them. The server-side session cache is off: resumption is by
 * session tickets only (TLS 1.2 RFC 5077 tickets and TLS 1.3 PSK
 * tickets), whose keys live in a tlsctx_keys ring shared by every
 * context and rotated under its own lock.
 *
 * Reload: build a new tlsctx_server from the new files with the same
 * tlsctx_keys; on failure keep the old one (its error string names the
 * file). Sessions running on the old SSL_CTX keep it (and the
 * certificates its callbacks read) alive through their SSL objects'
 * references.
 */
#ifndef SHOAL_TLSCTX_H
#define SHOAL_TLSCTX_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

#define TLSCTX_ERR_MAX		512	/* room for an error string */
#define TLSCTX_ALPN_MAX		256	/* wire bytes of an ALPN list */

/*
 * Session ticket keys: the current one encrypts new tickets, it and the
 * previous one decrypt (a ticket under the previous key is accepted and
 * renewed). Rotating every P seconds makes a ticket good for 1 to 2
 * periods. Any thread may call any function; one mutex guards the ring.
 */
struct tlsctx_keys;

/* A ring with one fresh random key. NULL when out of memory or entropy. */
struct tlsctx_keys	*tlsctx_keys_new(void);
/* Make a fresh current key; the current becomes the previous and the
   previous is wiped. Called from a timer (the control loop). 0 or -1. */
int			 tlsctx_keys_rotate(struct tlsctx_keys *);
/* Free the ring (NULL accepted) once no SSL_CTX built with it, nor any
   SSL made from one, remains (in practice: at exit). */
void			 tlsctx_keys_free(struct tlsctx_keys *);

/* Server (termination) settings; strings are read during the build only. */
struct tlsctx_server_conf {
	const char *const	*certs;		/* PEM files, each a leaf, its
						   chain, its private key */
	size_t			 ncerts;	/* >= 1; certs[0] is the
						   default */
	int			 min_version;	/* TLS1_2_VERSION (0 = this) or
						   TLS1_3_VERSION */
	const char		*alpn;		/* "h2,http/1.1": protocols in
						   the server's preference;
						   NULL = no ALPN */
	struct tlsctx_keys	*keys;		/* ticket keys (borrowed; must
						   outlive the context); NULL
						   = no resumption */
	bool			 ktls;		/* ask for kernel TLS */
};

struct tlsctx_server;

/*
 * Build a server context. All or nothing: on any error returns NULL and
 * writes "FILE: reason" (or the setting at fault) to err. Refused: an
 * unreadable file, no certificate, no private key, a key that does not
 * match its certificate, a certificate not yet valid or expired, a
 * certificate with no DNS name nor CN, a bad ALPN list or version.
 */
struct tlsctx_server	*tlsctx_server_new(const struct tlsctx_server_conf *,
			    char *err, size_t errlen);
/* Drop the builder's reference (NULL accepted). The tlsctx_server and its
   certificates stay until the last SSL made from its SSL_CTX is freed,
   so a reload may drop the old one while its sessions still run. */
void			 tlsctx_server_free(struct tlsctx_server *);

/* An SSL for one client connection, holding a reference on s (its
   certificates stay until it is freed). NULL when out of memory. */
SSL			*tlsctx_server_ssl(struct tlsctx_server *s);

/* The shared SSL_CTX (owned by the tlsctx_server; SSL objects made from
   it hold their own reference). */
SSL_CTX			*tlsctx_server_ctx(const struct tlsctx_server *);

/* Index of the certificate served for this SNI: an exact name of any
   file first, then a wildcard ("*.example.com": one label), in file
   order; 0 (the default) for NULL or no match. */
size_t			 tlsctx_server_pick(const struct tlsctx_server *,
			    const char *sni);

/* Number of names gathered for certificate i, and name j of it
   (lowercase, wildcards kept as "*.x"). */
size_t			 tlsctx_server_nnames(const struct tlsctx_server *,
			    size_t i);
const char		*tlsctx_server_name(const struct tlsctx_server *,
			    size_t i, size_t j);

/* Client (origination) settings. */
struct tlsctx_client_conf {
	const char		*verify;	/* CA bundle (PEM) to verify the
						   server against; NULL = verify
						   none */
	const char		*cert;		/* client certificate PEM (leaf,
						   chain, key); NULL = none */
	int			 min_version;	/* as for the server */
	const char		*alpn;		/* offered list or NULL */
	bool			 ktls;		/* ask for kernel TLS */
};

/* Build a client SSL_CTX (caller frees it with SSL_CTX_free), or NULL
   with "FILE: reason" in err. Shared by workers as the server's. */
SSL_CTX			*tlsctx_client_new(const struct tlsctx_client_conf *,
			    char *err, size_t errlen);

/* A client SSL on ctx sending SNI name (NULL: none) and, when ctx
   verifies, checking that the server's certificate is valid for name.
   Caller attaches the fd and frees it. NULL when out of memory. */
SSL			*tlsctx_client_ssl(SSL_CTX *ctx, const char *name);

#endif /* SHOAL_TLSCTX_H */
