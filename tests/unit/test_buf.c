/*
 * test_buf.c - the relay buffer pool.
 */
#include <stdlib.h>

#include "buf.h"
#include "t.h"

int
main(void)
{
	struct buf_pool	 p;
	struct buf	*b[8], *again;

	buf_pool_init(&p, 4);
	for (int i = 0; i < 8; i++)
		b[i] = buf_get(&p);
	is_int(p.out, 8, "eight buffers handed out");
	ok(b[0] != b[1], "distinct buffers");
	b[0]->len = 10;
	b[0]->off = 3;
	is_int(buf_pending(b[0]), 7, "pending = len - off");
	is_int(buf_pending(NULL), 0, "no buffer, nothing pending");
	for (int i = 0; i < 8; i++)
		buf_put(&p, b[i]);
	is_int(p.out, 0, "all returned");
	is_int(p.nfree, 4, "the cache keeps at most max_free buffers");
	again = buf_get(&p);
	ok(again == b[3], "a cached buffer is reused (LIFO)");
	is_int(again->len, 0, "a reused buffer comes back empty");
	is_int(again->off, 0, "with its offset reset");
	buf_put(&p, again);
	buf_put(&p, NULL);
	is_int(p.out, 0, "buf_put(NULL) is a no-op");
	buf_pool_fini(&p);
	is_int(p.nfree, 0, "fini empties the cache");
	return done_testing();
}
