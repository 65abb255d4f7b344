/*
 * keys.h - discovery key files, shared by shoal and shoal-announce.
 *
 * Format: one key per line, "ID HEXKEY": ID is 1-255, HEXKEY 16-64 bytes
 * in hex (32 recommended); blank lines and lines starting with '#' are
 * ignored, as is anything after a '#' preceded by a blank. Every id may
 * appear once. The file must be a regular file that neither group nor
 * others may access (mode 0600 or stricter): keys_load() refuses anything
 * else.
 */
#ifndef SHOAL_KEYS_H
#define SHOAL_KEYS_H

#include <stddef.h>

#include "codec.h"

#define KEYS_MAX	255	/* one per id */
#define KEYS_ERR_MAX	512

/*
 * Read the key file at path into keys[0, max); *n gets the count (at least
 * one). Returns 0, or -1 with a message in err ("PATH:LINE: why" or
 * "PATH: why") and nothing useful in keys.
 */
int	keys_load(const char *path, struct codec_key *keys, size_t max,
	    size_t *n, char err[KEYS_ERR_MAX]);

/* The key with this id in keys[0, n), or NULL. */
const struct codec_key *keys_find(const struct codec_key *keys, size_t n,
	    int id);

/* Overwrite key material (n keys) so that it does not linger in memory. */
void	keys_wipe(struct codec_key *keys, size_t n);

#endif /* SHOAL_KEYS_H */
