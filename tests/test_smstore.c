/*
 * test_smstore.c - unit tests for shm/smstore.c, the XEP-0198 journal in
 * shared memory: append and acknowledge in order, counters wrapping
 * around 2^32, the per-session bounds, a full pool or record array
 * refused without harm to other sessions, previds (garbage, truncated,
 * forged, stale: never found, never a crash), a writer killed in the
 * middle of each kind of change (a forked child stopped by the test
 * hook) then smstore_recover_slot() giving back exactly what was
 * published, the master's smstore_keeps(), the usage figures, and a
 * cluster's previds (shm/smwire.c: smstore's id with the minting node's
 * tag and a MAC; another key, tag or MAC never verifies).
 * Forked children _exit() and carry an alarm().
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ipc.h"
#include "smstore.h"
#include "smwire.h"

#define TEST_TIMEOUT 120.
TestSuite(smstore, .timeout = TEST_TIMEOUT);

struct smap {
	void *mem;
	size_t size;
	struct smstore *s;
};

static void smap_open(struct smap *m, unsigned nslots, uint32_t records,
		      uint64_t bytes)
{
	const char *error = NULL;

	m->size = smstore_size(nslots, records, bytes);
	cr_assert_gt(m->size, 0);
	m->mem = mmap(NULL, m->size, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(m->mem, MAP_FAILED);
	cr_assert_eq(smstore_init(m->mem, m->size, nslots, records, bytes,
				  &error), 0, "%s", error);
	m->s = smstore_attach(m->mem, &error);
	cr_assert_not_null(m->s, "%s", error);
}

static void smap_close(struct smap *m)
{
	smstore_detach(&m->s);
	cr_assert_null(m->s);
	munmap(m->mem, m->size);
}

static void verify(struct smap *m, unsigned slot)
{
	const char *error = NULL;

	cr_assert_eq(smstore_verify_slot(m->s, slot, &error), 0, "slot %u: %s",
		     slot, error);
}

static struct sm_ref open_rec(struct smap *m, unsigned slot,
			      const char *jid, uint32_t conn_id,
			      int resumable, char id[SMSTORE_ID_MAX])
{
	struct sm_ref ref;
	char tmp[SMSTORE_ID_MAX];
	const char *error = NULL;

	cr_assert_eq(smstore_open(m->s, slot, jid, conn_id, 7, resumable,
				  300, &ref, id != NULL ? id : tmp, &error),
		     0, "%s", error);
	return ref;
}

static void append(struct smap *m, const struct sm_ref *ref,
		   const char *text)
{
	const char *error = NULL;

	cr_assert_eq(smstore_append(m->s, ref, text, strlen(text), &error), 0,
		     "%s", error);
}

/* The journal as "seq:text|seq:text|". */
struct collect {
	char out[65536];
	size_t n;
	int stop_after;         /* 0: never */
};

static int collect_cb(uint32_t seq, const char *data, size_t len, void *ctx)
{
	struct collect *c = ctx;
	int w = snprintf(c->out + c->n, sizeof(c->out) - c->n, "%u:%.*s|",
			 seq, (int)len, data);

	cr_assert(w > 0 && (size_t)w < sizeof(c->out) - c->n);
	cr_assert_eq(data[len], '\0');
	c->n += (size_t)w;
	if (c->stop_after > 0 && --c->stop_after == 0)
		return 42;
	return 0;
}

static const char *journal(struct smap *m, const struct sm_ref *ref,
			   struct collect *c)
{
	memset(c, 0, sizeof(*c));
	cr_assert_eq(smstore_foreach_unacked(m->s, ref, collect_cb, c), 0);
	return c->out;
}

static struct sm_state state_of(struct smap *m, const struct sm_ref *ref)
{
	struct sm_state st;

	cr_assert_eq(smstore_read(m->s, ref, &st), 0);
	return st;
}

/* A stanza of n bytes, its first bytes naming it. */
static char *big(size_t n, int tag)
{
	char *p = malloc(n + 1);

	cr_assert_not_null(p);
	char head[16];
	int k = snprintf(head, sizeof(head), "<m%d/>", tag);

	memset(p, 'a' + tag % 26, n);
	memcpy(p, head, (size_t)k < n ? (size_t)k : n);
	p[n] = '\0';
	return p;
}

Test(smstore, open_append_ack_in_order)
{
	struct smap m;
	struct collect c;
	struct sm_state st;
	char id[SMSTORE_ID_MAX];

	smap_open(&m, 2, 16, 64 * 1024);
	struct sm_ref ref = open_rec(&m, 1, "juliet@example.com/balcony", 5, 1,
				     id);
	cr_assert_eq(ref.slot, 1);
	cr_assert_gt(strlen(id), 0);
	cr_assert_lt(strlen(id), SMSTORE_ID_MAX);
	st = state_of(&m, &ref);
	cr_assert_eq(st.state, SM_REC_ATTACHED);
	cr_assert_str_eq(st.jid, "juliet@example.com/balcony");
	cr_assert_eq(st.conn_id, 5);
	cr_assert_eq(st.gen, 7);
	cr_assert_eq(st.resumable, 1);
	cr_assert_eq(st.max_s, 300);
	cr_assert_eq(st.h_sent, 0);
	cr_assert_eq(st.unacked, 0);

	append(&m, &ref, "<message id='1'/>");
	append(&m, &ref, "<presence id='2'/>");
	append(&m, &ref, "<iq id='3'/>");
	cr_assert_str_eq(journal(&m, &ref, &c),
			 "1:<message id='1'/>|2:<presence id='2'/>|"
			 "3:<iq id='3'/>|");
	st = state_of(&m, &ref);
	cr_assert_eq(st.h_sent, 3);
	cr_assert_eq(st.unacked, 3);
	cr_assert_eq(st.unacked_bytes, 17 + 18 + 12);

	cr_assert_eq(smstore_ack(m.s, &ref, 2), 0);
	cr_assert_str_eq(journal(&m, &ref, &c), "3:<iq id='3'/>|");
	st = state_of(&m, &ref);
	cr_assert_eq(st.h_acked, 2);
	cr_assert_eq(st.h_sent, 3);
	cr_assert_eq(st.unacked_bytes, 12);
	/* Acknowledging again what is acknowledged changes nothing; beyond
	 * h_sent is handled-count-too-high. */
	cr_assert_eq(smstore_ack(m.s, &ref, 2), 0);
	cr_assert_eq(smstore_ack(m.s, &ref, 4), -1);
	cr_assert_str_eq(journal(&m, &ref, &c), "3:<iq id='3'/>|");
	cr_assert_eq(smstore_ack(m.s, &ref, 3), 0);
	cr_assert_str_eq(journal(&m, &ref, &c), "");
	append(&m, &ref, "<message id='4'/>");
	cr_assert_str_eq(journal(&m, &ref, &c), "4:<message id='4'/>|");

	/* The walk stops at the callback's answer. */
	append(&m, &ref, "<message id='5'/>");
	memset(&c, 0, sizeof(c));
	c.stop_after = 1;
	cr_assert_eq(smstore_foreach_unacked(m.s, &ref, collect_cb, &c), 42);
	cr_assert_str_eq(c.out, "4:<message id='4'/>|");
	verify(&m, 1);
	verify(&m, 0);
	smap_close(&m);
}

Test(smstore, stanzas_span_blocks)
{
	struct smap m;
	struct collect c;
	size_t sizes[] = { 1, IPC_SM_BLOCK_DATA - 1, IPC_SM_BLOCK_DATA,
			   IPC_SM_BLOCK_DATA + 1, 3 * IPC_SM_BLOCK_DATA,
			   10000 };
	char *want = calloc(1, 200000);

	smap_open(&m, 1, 4, 256 * 1024);
	struct sm_ref ref = open_rec(&m, 0, "a@b/c", 1, 1, NULL);
	size_t total = 0, off = 0;
	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		char *p = big(sizes[i], (int)i);
		append(&m, &ref, p);
		off += (size_t)sprintf(want + off, "%u:%s|", i + 1, p);
		total += sizes[i];
		free(p);
	}
	cr_assert_str_eq(journal(&m, &ref, &c), want);
	cr_assert_eq(state_of(&m, &ref).unacked_bytes, total);
	verify(&m, 0);
	free(want);
	smap_close(&m);
}

Test(smstore, counters_wrap_around_2_32)
{
	struct smap m;
	struct collect c;
	struct sm_state st;

	smap_open(&m, 1, 4, 64 * 1024);
	struct sm_ref ref = open_rec(&m, 0, "a@b/c", 1, 1, NULL);
	cr_assert_eq(smstore_set_h_acked(m.s, &ref, 0xfffffffdu), 0);
	append(&m, &ref, "<a/>");       /* 0xfffffffe */
	append(&m, &ref, "<b/>");       /* 0xffffffff */
	append(&m, &ref, "<c/>");       /* 0 */
	append(&m, &ref, "<d/>");       /* 1 */
	cr_assert_eq(smstore_set_h_acked(m.s, &ref, 5), -1,
		     "counters restart only on an empty journal");
	st = state_of(&m, &ref);
	cr_assert_eq(st.h_sent, 1);
	cr_assert_eq(st.unacked, 4);
	cr_assert_str_eq(journal(&m, &ref, &c),
			 "4294967294:<a/>|4294967295:<b/>|0:<c/>|1:<d/>|");
	/* h = 2 is beyond h_sent (1) modulo 2^32; so is 0xfffffffc, which
	 * is before h_acked. */
	cr_assert_eq(smstore_ack(m.s, &ref, 2), -1);
	cr_assert_eq(smstore_ack(m.s, &ref, 0xfffffffcu), -1);
	cr_assert_eq(smstore_ack(m.s, &ref, 0xffffffffu), 0);
	cr_assert_str_eq(journal(&m, &ref, &c), "0:<c/>|1:<d/>|");
	cr_assert_eq(smstore_ack(m.s, &ref, 0), 0);
	cr_assert_str_eq(journal(&m, &ref, &c), "1:<d/>|");
	st = state_of(&m, &ref);
	cr_assert_eq(st.h_acked, 0);
	cr_assert_eq(st.h_sent, 1);
	cr_assert_eq(smstore_ack(m.s, &ref, 1), 0);
	cr_assert_eq(state_of(&m, &ref).unacked, 0);
	verify(&m, 0);
	smap_close(&m);
}

Test(smstore, per_session_bounds)
{
	struct smap m;
	struct collect c;
	const char *error = NULL;

	smap_open(&m, 1, 4, 1024 * 1024);
	smstore_set_limits(m.s, 3, 100000);
	struct sm_ref ref = open_rec(&m, 0, "a@b/c", 1, 1, NULL);
	append(&m, &ref, "<a/>");
	append(&m, &ref, "<b/>");
	append(&m, &ref, "<c/>");
	cr_assert_eq(smstore_append(m.s, &ref, "<d/>", 4, &error), -1);
	cr_assert(strstr(error, "sm.max_unacked_stanzas") != NULL, "%s",
		  error);
	cr_assert_str_eq(journal(&m, &ref, &c), "1:<a/>|2:<b/>|3:<c/>|");
	cr_assert_eq(smstore_ack(m.s, &ref, 1), 0);
	append(&m, &ref, "<d/>");

	/* Bytes: stanzas + 8 each + the presence. */
	smstore_set_limits(m.s, 100, 3 * 8 + 12 + 100);
	/* journal: 3 stanzas of 4 bytes = 36 of 136 */
	char *p = big(100, 1);
	cr_assert_eq(smstore_set_presence(m.s, &ref, 5, 1, p, 100, &error),
		     0, "%s", error);
	cr_assert_eq(smstore_append(m.s, &ref, "<e/>", 4, &error), -1);
	cr_assert(strstr(error, "sm.max_unacked_bytes") != NULL, "%s", error);
	cr_assert_eq(smstore_set_presence(m.s, &ref, 5, 1, p, 101, &error),
		     -1);
	cr_assert_eq(smstore_ack(m.s, &ref, 2), 0);
	append(&m, &ref, "<e/>");
	cr_assert_str_eq(journal(&m, &ref, &c), "3:<c/>|4:<d/>|5:<e/>|");
	free(p);

	/* The bound never goes past one hand-over frame. */
	smstore_set_limits(m.s, 100000, 1u << 30);
	p = big(SMSTORE_BYTES_MAX, 2);
	cr_assert_eq(smstore_append(m.s, &ref, p, SMSTORE_BYTES_MAX, &error),
		     -1);
	free(p);
	verify(&m, 0);
	smap_close(&m);
}

Test(smstore, full_pool_refused_without_harm)
{
	struct smap m;
	struct collect c, before;
	const char *error = NULL;
	uint32_t recs;
	uint64_t bytes;

	/* 64 blocks. */
	smap_open(&m, 2, 4, 64 * IPC_SM_BLOCK);
	struct sm_ref a = open_rec(&m, 0, "a@b/1", 1, 1, NULL);
	struct sm_ref b = open_rec(&m, 0, "a@b/2", 2, 1, NULL);
	struct sm_ref other = open_rec(&m, 1, "x@y/1", 1, 1, NULL);
	append(&m, &other, "<other/>");
	append(&m, &a, "<a1/>");
	char *p = big(IPC_SM_BLOCK_DATA * 10, 3);     /* 10 blocks each */
	int n = 0;
	while (smstore_append(m.s, &b, p, strlen(p), &error) == 0)
		n++;
	cr_assert_eq(n, 6, "63 blocks left: 6 stanzas of 10");
	cr_assert(strstr(error, "sm.pool_bytes_per_worker") != NULL, "%s",
		  error);
	journal(&m, &b, &before);
	/* Three blocks left: a small stanza still fits, a big one not. */
	append(&m, &a, "<a2/>");
	cr_assert_eq(smstore_append(m.s, &a, p, IPC_SM_BLOCK_DATA * 3, &error),
		     -1);
	cr_assert_eq(smstore_set_presence(m.s, &a, 0, 1, p,
					  IPC_SM_BLOCK_DATA * 3, &error), -1);
	cr_assert_str_eq(journal(&m, &a, &c), "1:<a1/>|2:<a2/>|");
	cr_assert_str_eq(journal(&m, &b, &c), before.out);
	cr_assert_str_eq(journal(&m, &other, &c), "1:<other/>|");
	smstore_usage(m.s, 0, &recs, &bytes);
	cr_assert_eq(recs, 2);
	cr_assert_eq(bytes, 62u * IPC_SM_BLOCK);
	verify(&m, 0);
	verify(&m, 1);
	/* Acknowledged blocks are free again. */
	cr_assert_eq(smstore_ack(m.s, &b, 6), 0);
	append(&m, &a, p);
	smstore_usage(m.s, 0, &recs, &bytes);
	cr_assert_eq(bytes, 12u * IPC_SM_BLOCK);
	free(p);
	verify(&m, 0);
	smap_close(&m);
}

Test(smstore, full_record_array_refused)
{
	struct smap m;
	struct sm_ref refs[4], r;
	char id[SMSTORE_ID_MAX];
	const char *error = NULL;

	smap_open(&m, 1, 4, 64 * 1024);
	for (int i = 0; i < 4; i++)
		refs[i] = open_rec(&m, 0, "a@b/c", (uint32_t)i, 1, NULL);
	cr_assert_eq(smstore_open(m.s, 0, "a@b/d", 9, 7, 1, 300, &r, id,
				  &error), -1);
	cr_assert(strstr(error, "sm.records_per_worker") != NULL, "%s", error);
	cr_assert_eq(smstore_open(m.s, 1, "a@b/d", 9, 7, 1, 300, &r, id,
				  &error), -1, "no slot 1");
	cr_assert_eq(smstore_open(m.s, 0, "", 9, 7, 1, 300, &r, id, &error),
		     -1);
	smstore_close(m.s, &refs[2]);
	r = open_rec(&m, 0, "a@b/e", 9, 1, NULL);
	cr_assert_eq(r.index, refs[2].index);
	cr_assert_neq(r.seq, refs[2].seq, "a reused record has a new seq");
	struct sm_state st;
	cr_assert_eq(smstore_read(m.s, &refs[2], &st), -1, "stale ref");
	cr_assert_eq(smstore_append(m.s, &refs[2], "<x/>", 4, &error), -1);
	verify(&m, 0);
	smap_close(&m);
}

Test(smstore, find_only_exact_live_ids)
{
	struct smap m;
	struct sm_ref ref, got;
	char id[SMSTORE_ID_MAX], id2[SMSTORE_ID_MAX], bad[SMSTORE_ID_MAX * 2];
	unsigned char noise[256];
	size_t len;

	smap_open(&m, 2, 8, 64 * 1024);
	ref = open_rec(&m, 1, "a@b/c", 3, 1, id);
	open_rec(&m, 1, "a@b/d", 4, 1, id2);
	len = strlen(id);
	cr_assert_eq(smstore_find(m.s, id, len, &got), 1);
	cr_assert_eq(got.slot, ref.slot);
	cr_assert_eq(got.index, ref.index);
	cr_assert_eq(got.seq, ref.seq);
	cr_assert_neq(strcmp(id, id2), 0);

	/* Garbage of any length and any bytes. */
	cr_assert_eq(smstore_find(m.s, "", 0, &got), 0);
	cr_assert_eq(smstore_find(m.s, NULL, 0, &got), 0);
	for (unsigned i = 0; i < sizeof(noise); i++)
		noise[i] = (unsigned char)(i * 37 + 11);
	for (size_t n = 0; n <= sizeof(noise); n++)
		cr_assert_eq(smstore_find(m.s, (char *)noise, n, &got), 0);
	memset(bad, 'A', sizeof(bad));
	for (size_t n = 0; n < sizeof(bad); n++)
		cr_assert_eq(smstore_find(m.s, bad, n, &got), 0);
	/* Truncated, extended, NUL inside. */
	for (size_t n = 0; n < len; n++)
		cr_assert_eq(smstore_find(m.s, id, n, &got), 0);
	snprintf(bad, sizeof(bad), "%sA", id);
	cr_assert_eq(smstore_find(m.s, bad, len + 1, &got), 0);
	memcpy(bad, id, len);
	bad[len / 2] = '\0';
	cr_assert_eq(smstore_find(m.s, bad, len, &got), 0);
	/* Each character changed to each other one of the alphabet (and
	 * standard base64's + and /): never found.  A change in the token
	 * (from the 15th character on: bits 84.. of the binary) names no
	 * token; one in the slot, index or seq names a header the record
	 * does not answer to (one previd text per session: a session that
	 * moved keeps answering to the header of its first record). */
	static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmn"
				    "opqrstuvwxyz0123456789-_+/=";
	for (size_t i = 0; i < len; i++) {
		for (const char *a = alpha; *a != '\0'; a++) {
			if (*a == id[i])
				continue;
			memcpy(bad, id, len + 1);
			bad[i] = *a;
			memset(&got, 0xff, sizeof(got));
			cr_assert_eq(smstore_find(m.s, bad, len, &got), 0,
				     "%s", bad);
		}
	}
	/* The other session's slot/index/seq with this one's token: not
	 * found (neither session answers to that text). */
	memcpy(bad, id2, len + 1);
	memcpy(bad + 13, id + 13, len - 13);
	cr_assert_eq(smstore_find(m.s, bad, len, &got), 0);

	/* A closed record, a reused one, a GIVEN one, a non-resumable
	 * one: not found. */
	smstore_close(m.s, &ref);
	cr_assert_eq(smstore_find(m.s, id, len, &got), 0);
	struct sm_ref again = open_rec(&m, 1, "a@b/c", 3, 1, NULL);
	cr_assert_eq(again.index, ref.index);
	cr_assert_eq(smstore_find(m.s, id, len, &got), 0);
	cr_assert_eq(smstore_find(m.s, id2, strlen(id2), &got), 1);
	smstore_set_state(m.s, &got, SM_REC_GIVEN, 0);
	cr_assert_eq(smstore_find(m.s, id2, strlen(id2), &got), 0);
	char none[SMSTORE_ID_MAX];
	struct sm_ref nr = open_rec(&m, 1, "a@b/e", 5, 0, none);
	cr_assert_str_eq(none, "", "no previd without resume");
	cr_assert_eq(smstore_id(m.s, &nr, none), -1);
	cr_assert_eq(smstore_id(m.s, &ref, none), -1, "closed");
	cr_assert_eq(smstore_id(m.s, &got, none), 0, "GIVEN has its id");
	cr_assert_str_eq(none, id2);
	verify(&m, 1);
	smap_close(&m);
}

Test(smstore, forged_slot_and_index_out_of_range)
{
	struct smap m;
	struct sm_ref ref, got, forged;
	char id[SMSTORE_ID_MAX];
	const struct ipc_sm_record *rec;

	smap_open(&m, 2, 8, 64 * 1024);
	ref = open_rec(&m, 0, "a@b/c", 3, 1, id);
	/* Ids built by hand from the record in the mapping: the real
	 * token under slots, indices and seqs out of range or wrong finds
	 * nothing (the record answers to its own header only), a wrong
	 * token under that header finds nothing either, and a ref made of
	 * the forged header reads nothing. */
	const struct ipc_sm_area *hdr = m.mem;
	rec = (const struct ipc_sm_record *)((const char *)m.mem +
					     hdr->slots[0].offset +
					     hdr->records_offset);
	struct { uint16_t slot; uint32_t index, seq; } cases[] = {
		{ 2, 0, 1 }, { 64, 0, 1 }, { 0xffff, 0, 1 }, { 0, 8, 1 },
		{ 0, 1, 1 }, { 0, 0xffffffffu, 1 }, { 0, 0, 0 },
		{ 0, 0, 2 }, { 1, 0, 1 },
	};
	for (unsigned k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		uint8_t bin[26];
		char text[SMSTORE_ID_MAX];

		bin[0] = (uint8_t)cases[k].slot;
		bin[1] = (uint8_t)(cases[k].slot >> 8);
		for (int i = 0; i < 4; i++) {
			bin[2 + i] = (uint8_t)(cases[k].index >> (8 * i));
			bin[6 + i] = (uint8_t)(cases[k].seq >> (8 * i));
		}
		memcpy(bin + 10, rec->token, 16);
		cr_assert_not_null(sodium_bin2base64(
			text, sizeof(text), bin, sizeof(bin),
			sodium_base64_VARIANT_URLSAFE_NO_PADDING));
		cr_assert_eq(strlen(text), strlen(id));
		cr_assert_eq(smstore_find(m.s, text, strlen(text), &got), 0,
			     "case %u", k);
		bin[10 + k] ^= 0x40;
		sodium_bin2base64(text, sizeof(text), bin, sizeof(bin),
				  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
		cr_assert_eq(smstore_find(m.s, text, strlen(text), &got), 0,
			     "case %u", k);
		forged.slot = cases[k].slot;
		forged.index = cases[k].index;
		forged.seq = cases[k].seq;
		struct sm_state st;
		cr_assert_eq(smstore_read(m.s, &forged, &st), -1);
	}
	/* And the genuine one, built the same way, is found. */
	uint8_t bin[26] = { 0, 0, (uint8_t)ref.index, 0, 0, 0,
			    (uint8_t)ref.seq, 0, 0, 0 };
	char text[SMSTORE_ID_MAX];
	memcpy(bin + 10, rec->token, 16);
	sodium_bin2base64(text, sizeof(text), bin, sizeof(bin),
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	cr_assert_str_eq(text, id);
	cr_assert_eq(smstore_find(m.s, text, strlen(text), &got), 1);
	smap_close(&m);
}

/* A session resumed on another worker keeps its previd (XEP-0198 has
 * no new id at <resumed/>): the new owner's record answers to it. */
Test(smstore, moved_session_keeps_its_id)
{
	struct smap m;
	struct sm_ref old, moved, got;
	char id[SMSTORE_ID_MAX];
	const char *error = NULL;

	smap_open(&m, 3, 8, 64 * 1024);
	open_rec(&m, 0, "x@b/1", 1, 1, NULL);
	old = open_rec(&m, 0, "a@b/c", 2, 1, id);
	cr_assert_eq(smstore_open_as(m.s, 2, "garbage", "a@b/c", 5, 6, 1, 300,
				     &moved, &error), -1);
	cr_assert_eq(smstore_open_as(m.s, 2, id, "a@b/c", 5, 6, 1, 300,
				     &moved, &error), 0, "%s", error);
	/* The moved record gives the client's id back, as the first did. */
	char again_id[SMSTORE_ID_MAX];
	cr_assert_eq(smstore_id(m.s, &moved, again_id), 0);
	cr_assert_str_eq(again_id, id);
	cr_assert_eq(smstore_id(m.s, &old, again_id), 0);
	cr_assert_str_eq(again_id, id);
	/* While both exist (the old one not yet GIVEN) either is the
	 * session; once the old is GIVEN, only the new one answers. */
	cr_assert_eq(smstore_find(m.s, id, strlen(id), &got), 1);
	smstore_set_state(m.s, &old, SM_REC_GIVEN, 0);
	cr_assert_eq(smstore_find(m.s, id, strlen(id), &got), 1);
	cr_assert_eq(got.slot, 2);
	cr_assert_eq(got.index, moved.index);
	cr_assert_eq(got.seq, moved.seq);
	smstore_close(m.s, &old);
	/* A new session in the old record's place does not take the id. */
	open_rec(&m, 0, "y@b/1", 3, 1, NULL);
	cr_assert_eq(smstore_find(m.s, id, strlen(id), &got), 1);
	cr_assert_eq(got.slot, 2);
	/* It moves on again (to slot 1), and ends. */
	struct sm_ref again;
	cr_assert_eq(smstore_open_as(m.s, 1, id, "a@b/c", 8, 9, 1, 300,
				     &again, &error), 0);
	smstore_set_state(m.s, &moved, SM_REC_GIVEN, 0);
	smstore_close(m.s, &moved);
	cr_assert_eq(smstore_find(m.s, id, strlen(id), &got), 1);
	cr_assert_eq(got.slot, 1);
	/* Recovery rebuilds the token index. */
	smstore_recover_slot(m.s, 1);
	cr_assert_eq(smstore_find(m.s, id, strlen(id), &got), 1);
	cr_assert_eq(got.slot, 1);
	smstore_close(m.s, &again);
	cr_assert_eq(smstore_find(m.s, id, strlen(id), &got), 0);
	for (unsigned k = 0; k < 3; k++)
		verify(&m, k);
	smap_close(&m);
}

Test(smstore, cluster_previds)
{
	struct smap m;
	struct sm_ref ref, names;
	char id[SMSTORE_ID_MAX], local[SMSTORE_ID_MAX];
	char cid[SMWIRE_PREVID_MAX], bad[SMWIRE_PREVID_MAX];
	uint8_t key[SMWIRE_KEY_BYTES], other[SMWIRE_KEY_BYTES];
	uint8_t t1[SMWIRE_PREVID_TAG], t2[SMWIRE_PREVID_TAG];
	uint8_t tag[SMWIRE_PREVID_TAG];

	memset(key, 0x11, sizeof(key));
	memset(other, 0x22, sizeof(other));
	smap_open(&m, 2, 8, 64 * 1024);
	ref = open_rec(&m, 1, "a@b/c", 2, 1, id);
	/* what the id names, read without the store's record */
	cr_assert_eq(smstore_id_names(id, strlen(id), &names), 0);
	cr_assert(names.slot == ref.slot && names.index == ref.index &&
		  names.seq == ref.seq);
	cr_assert_eq(smstore_id_names("garbage", 7, &names), -1);
	/* tags: stable per name, keyed, different between nodes */
	smwire_node_tag(key, "n1", t1);
	smwire_node_tag(key, "n1", tag);
	cr_assert_eq(memcmp(t1, tag, sizeof(tag)), 0);
	smwire_node_tag(key, "n2", t2);
	cr_assert_neq(memcmp(t1, t2, sizeof(t2)), 0);
	smwire_node_tag(other, "n1", tag);
	cr_assert_neq(memcmp(t1, tag, sizeof(tag)), 0);

	cr_assert_eq(smwire_previd_join(key, id, t1, cid), 0);
	cr_assert_eq(strlen(cid), strlen(id) + 1 + SMWIRE_PREVID_SUFFIX);
	cr_assert_lt(strlen(cid), SMWIRE_PREVID_MAX);
	/* any node with the key: smstore's part and the minting tag */
	cr_assert_eq(smwire_previd_split(key, cid, strlen(cid), local, tag), 0);
	cr_assert_str_eq(local, id);
	cr_assert_eq(memcmp(tag, t1, sizeof(tag)), 0);
	cr_assert_eq(smstore_find(m.s, local, strlen(local), &names), 1);
	/* another cluster's key, no key, the bare id in a cluster */
	cr_assert_eq(smwire_previd_split(other, cid, strlen(cid), local, tag), -1);
	cr_assert_eq(smwire_previd_split(NULL, cid, strlen(cid), local, tag), -1);
	cr_assert_eq(smwire_previd_split(key, id, strlen(id), local, tag), -1);
	cr_assert_eq(smwire_previd_split(NULL, id, strlen(id), local, tag), 0);
	cr_assert_str_eq(local, id);
	/* each character changed (id, tag or MAC), one more, one less, a
	 * NUL inside: refused */
	for (size_t i = 0; i < strlen(cid); i++) {
		if (cid[i] == '.')
			continue;
		memcpy(bad, cid, sizeof(bad));
		bad[i] = bad[i] == 'A' ? 'B' : 'A';
		cr_assert_eq(smwire_previd_split(key, bad, strlen(bad), local,
						 tag), -1, "changed at %zu", i);
	}
	char longer[SMWIRE_PREVID_MAX + 1];
	snprintf(longer, sizeof(longer), "%sA", cid);
	cr_assert_eq(smwire_previd_split(key, longer, strlen(longer), local,
					 tag), -1);
	cr_assert_eq(smwire_previd_split(key, cid, strlen(cid) - 1, local, tag),
		     -1);
	memcpy(bad, cid, sizeof(bad));
	bad[3] = '\0';
	cr_assert_eq(smwire_previd_split(key, bad, strlen(cid), local, tag), -1);
	/* a tag and MAC moved onto another id */
	char id2[SMSTORE_ID_MAX];
	open_rec(&m, 0, "d@b/e", 3, 1, id2);
	memcpy(bad, id2, strlen(id2));
	memcpy(bad + strlen(id2), cid + strlen(id), SMWIRE_PREVID_SUFFIX + 2);
	cr_assert_eq(smwire_previd_split(key, bad, strlen(bad), local, tag), -1);
	smap_close(&m);
}

Test(smstore, state_presence_words)
{
	struct smap m;
	struct sm_state st;
	char out[512];
	const char *error = NULL;
	const char *pres = "<presence><show>away</show></presence>";

	smap_open(&m, 1, 4, 64 * 1024);
	struct sm_ref ref = open_rec(&m, 0, "a@b/c", 3, 1, NULL);
	cr_assert_eq(smstore_presence(m.s, &ref, out, sizeof(out)), 0);
	cr_assert_eq(smstore_set_presence(m.s, &ref, -5, 1, pres,
					  strlen(pres), &error), 0);
	smstore_set_h_in(m.s, &ref, 0xfffffff0u);
	smstore_set_ext_word(m.s, &ref, 3, 0xabcdef);
	smstore_set_ext_word(m.s, &ref, SMSTORE_EXT_WORDS, 1);  /* ignored */
	smstore_set_mech(m.s, &ref, IPC_MECH_SCRAM_SHA_256);
	smstore_set_state(m.s, &ref, SM_REC_DETACHED, 123456);
	smstore_set_ids(m.s, &ref, 77, 78);
	st = state_of(&m, &ref);
	cr_assert_eq(st.state, SM_REC_DETACHED);
	cr_assert_eq(st.detached_ms, 123456);
	cr_assert_eq(st.priority, -5);
	cr_assert_eq(st.available, 1);
	cr_assert_eq(st.presence_len, strlen(pres));
	cr_assert_eq(st.h_in, 0xfffffff0u);
	cr_assert_eq(st.ext_words[3], 0xabcdef);
	cr_assert_eq(st.ext_words[4], 0);
	cr_assert_eq(st.mech, IPC_MECH_SCRAM_SHA_256);
	cr_assert_eq(st.conn_id, 77);
	cr_assert_eq(st.gen, 78);
	cr_assert_eq(smstore_presence(m.s, &ref, out, sizeof(out)),
		     (long)strlen(pres));
	cr_assert_eq(memcmp(out, pres, strlen(pres)), 0);
	cr_assert_eq(smstore_presence(m.s, &ref, out, 5), -1, "too small");
	smstore_set_state(m.s, &ref, SM_REC_ATTACHED, 999);
	st = state_of(&m, &ref);
	cr_assert_eq(st.detached_ms, 0);
	/* Unavailable: no presence kept. */
	cr_assert_eq(smstore_set_presence(m.s, &ref, 0, 0, NULL, 0, &error),
		     0);
	cr_assert_eq(smstore_presence(m.s, &ref, out, sizeof(out)), 0);
	uint32_t recs;
	uint64_t bytes;
	smstore_usage(m.s, 0, &recs, &bytes);
	cr_assert_eq(bytes, 0);
	verify(&m, 0);
	smap_close(&m);
}

/* ---- the master's sweep ------------------------------------------------ */

Test(smstore, keeps_resumable_live_records)
{
	struct smap m;

	smap_open(&m, 2, 16, 64 * 1024);
	struct sm_ref att = open_rec(&m, 0, "a@b/1", 1, 1, NULL);
	struct sm_ref det = open_rec(&m, 0, "a@b/2", 2, 1, NULL);
	open_rec(&m, 0, "a@b/3", 3, 0, NULL);              /* no resume */
	struct sm_ref given = open_rec(&m, 0, "a@b/4", 4, 1, NULL);
	struct sm_ref closed = open_rec(&m, 0, "a@b/5", 5, 1, NULL);
	open_rec(&m, 1, "a@b/6", 6, 1, NULL);              /* other slot */
	smstore_set_state(m.s, &det, SM_REC_DETACHED, 1);
	smstore_set_state(m.s, &given, SM_REC_GIVEN, 1);
	smstore_close(m.s, &closed);
	cr_assert_eq(smstore_keeps(m.s, 0, 1, 7), 1);
	cr_assert_eq(smstore_keeps(m.s, 0, 2, 7), 1);
	cr_assert_eq(smstore_keeps(m.s, 0, 1, 8), 0, "other gen");
	cr_assert_eq(smstore_keeps(m.s, 0, 3, 7), 0);
	cr_assert_eq(smstore_keeps(m.s, 0, 4, 7), 0);
	cr_assert_eq(smstore_keeps(m.s, 0, 5, 7), 0);
	cr_assert_eq(smstore_keeps(m.s, 0, 6, 7), 0);
	cr_assert_eq(smstore_keeps(m.s, 1, 6, 7), 1);
	cr_assert_eq(smstore_keeps(m.s, 2, 6, 7), 0, "no slot 2");
	/* Changes after a first sweep are seen by the next one. */
	smstore_set_ids(m.s, &att, 100, 7);
	smstore_close(m.s, &det);
	open_rec(&m, 0, "a@b/7", 9, 1, NULL);
	cr_assert_eq(smstore_keeps(m.s, 0, 1, 7), 0);
	cr_assert_eq(smstore_keeps(m.s, 0, 100, 7), 1);
	cr_assert_eq(smstore_keeps(m.s, 0, 2, 7), 0);
	cr_assert_eq(smstore_keeps(m.s, 0, 9, 7), 1);
	smap_close(&m);
}

/* ---- a writer killed mid-change ----------------------------------------- */

static const char *crash_point;

static void crash_hook(const char *point)
{
	if (strcmp(point, crash_point) == 0)
		_exit(0);
}

/* Run fn in a child that dies at `point` (exit 0 there; 3 if it never
 * got there). */
static void run_and_die(const char *point, void (*fn)(struct smap *),
			struct smap *m)
{
	pid_t pid = fork();
	int status;

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		alarm(30);
		crash_point = point;
		smstore_test_hook = crash_hook;
		fn(m);
		_exit(3);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "the child did not stop at %s", point);
}

/* Published before every crash: record 0 with three stanzas (the
 * second spanning blocks), acknowledged up to 1, and a presence;
 * record 1 of another session with one stanza. */
static struct sm_ref crash_a, crash_b;
static char *crash_big;

static void crash_setup(struct smap *m)
{
	const char *error = NULL;

	smap_open(m, 2, 8, 64 * 1024);
	crash_a = open_rec(m, 1, "a@b/c", 1, 1, NULL);
	crash_b = open_rec(m, 1, "a@b/d", 2, 1, NULL);
	crash_big = big(1000, 5);
	append(m, &crash_a, "<s1/>");
	append(m, &crash_a, crash_big);
	append(m, &crash_a, "<s3/>");
	append(m, &crash_b, "<b1/>");
	cr_assert_eq(smstore_ack(m->s, &crash_a, 1), 0);
	cr_assert_eq(smstore_set_presence(m->s, &crash_a, 1, 1, "<presence/>",
					  11, &error), 0);
}

static void crash_check(struct smap *m, const char *want_a)
{
	struct collect c;
	char want[4096];
	uint32_t recs;
	uint64_t bytes;

	smstore_recover_slot(m->s, 1);
	verify(m, 1);
	snprintf(want, sizeof(want), want_a, crash_big);
	cr_assert_str_eq(journal(m, &crash_a, &c), want);
	cr_assert_str_eq(journal(m, &crash_b, &c), "1:<b1/>|");
	/* The slot works on after recovery, and its figures are right. */
	append(m, &crash_b, "<b2/>");
	cr_assert_str_eq(journal(m, &crash_b, &c), "1:<b1/>|2:<b2/>|");
	verify(m, 1);
	smstore_usage(m->s, 1, &recs, &bytes);
	cr_assert_eq(recs, 2);
	free(crash_big);
	smap_close(m);
}

static void do_append(struct smap *m)
{
	char *p = big(2000, 9);

	append(m, &crash_a, p);
}

Test(smstore, crash_mid_append)
{
	struct smap m;

	crash_setup(&m);
	run_and_die("append", do_append, &m);
	/* The blocks the child took are stranded until recovery. */
	const char *error = NULL;
	cr_assert_eq(smstore_verify_slot(m.s, 1, &error), -1);
	crash_check(&m, "2:%s|3:<s3/>|");
}

static void do_ack(struct smap *m)
{
	smstore_ack(m->s, &crash_a, 2);
}

Test(smstore, crash_mid_ack)
{
	struct smap m;

	crash_setup(&m);
	run_and_die("ack", do_ack, &m);
	/* Published: stanza 2 is acknowledged, its blocks are free again
	 * after recovery (verify counts every block). */
	crash_check(&m, "3:<s3/>|");
}

static void do_presence(struct smap *m)
{
	const char *error;
	char *p = big(600, 1);

	smstore_set_presence(m->s, &crash_a, 2, 1, p, 600, &error);
}

Test(smstore, crash_mid_presence)
{
	struct smap m;
	char out[64];

	crash_setup(&m);
	run_and_die("presence", do_presence, &m);
	smstore_recover_slot(m.s, 1);
	cr_assert_eq(smstore_presence(m.s, &crash_a, out, sizeof(out)), 11);
	cr_assert_eq(memcmp(out, "<presence/>", 11), 0);
	crash_check(&m, "2:%s|3:<s3/>|");
}

static void do_open(struct smap *m)
{
	open_rec(m, 1, "new@b/c", 9, 1, NULL);
}

Test(smstore, crash_mid_open)
{
	struct smap m;

	crash_setup(&m);
	run_and_die("open", do_open, &m);
	smstore_recover_slot(m.s, 1);
	cr_assert_eq(smstore_keeps(m.s, 1, 9, 7), 0, "never published");
	crash_check(&m, "2:%s|3:<s3/>|");
}

static void do_close(struct smap *m)
{
	smstore_close(m->s, &crash_b);
}

static int count_cb(const struct sm_ref *ref, const struct sm_state *st,
		    void *ctx)
{
	(void)ref;
	cr_assert_neq(st->state, SM_REC_FREE);
	(*(int *)ctx)++;
	return 0;
}

Test(smstore, crash_mid_close)
{
	struct smap m;
	struct collect c;
	char want[2048];
	int n = 0;

	crash_setup(&m);
	run_and_die("close", do_close, &m);
	smstore_recover_slot(m.s, 1);
	verify(&m, 1);
	cr_assert_eq(smstore_foreach_record(m.s, 1, count_cb, &n), 0);
	cr_assert_eq(n, 1, "the closed record is gone, its blocks free");
	snprintf(want, sizeof(want), "2:%s|3:<s3/>|", crash_big);
	cr_assert_str_eq(journal(&m, &crash_a, &c), want);
	free(crash_big);
	smap_close(&m);
}

/* A child that appends in a loop is SIGKILLed at an arbitrary moment:
 * whatever it published is there, in order, with no gap. */
Test(smstore, sigkill_during_appends)
{
	struct smap m;
	int pipefd[2];

	/* 1024 blocks: at most 1024 stanzas, which collect's buffer
	 * holds. */
	smap_open(&m, 1, 8, 1024 * IPC_SM_BLOCK);
	struct sm_ref ref = open_rec(&m, 0, "a@b/c", 1, 1, NULL);
	cr_assert_eq(pipe(pipefd), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		char text[64];
		const char *error;
		uint32_t h = 0;

		alarm(30);
		close(pipefd[0]);
		for (uint32_t i = 1;; i++) {
			int n = snprintf(text, sizeof(text), "<m n='%u'/>", i);
			if (smstore_append(m.s, &ref, text, (size_t)n,
					   &error) < 0) {
				/* full: acknowledge half, go on */
				h += (i - 1 - h) / 2;
				smstore_ack(m.s, &ref, h);
				i--;
			}
			if (i == 2000 && write(pipefd[1], "x", 1) != 1)
				_exit(4);
		}
	}
	close(pipefd[1]);
	char x;
	cr_assert_eq(read(pipefd[0], &x, 1), 1);
	close(pipefd[0]);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	smstore_recover_slot(m.s, 0);
	verify(&m, 0);
	struct sm_state st = state_of(&m, &ref);
	cr_assert_geq(st.h_sent, 2000);
	struct collect c;
	journal(&m, &ref, &c);
	/* "seq:<m n='seq'/>|" for every seq in h_acked+1 .. h_sent */
	const char *p = c.out;
	for (uint32_t seq = st.h_acked + 1; seq != st.h_sent + 1; seq++) {
		char want[64];
		int n = snprintf(want, sizeof(want), "%u:<m n='%u'/>|", seq,
				 seq);
		cr_assert_eq(strncmp(p, want, (size_t)n), 0, "at %u: %.40s",
			     seq, p);
		p += n;
	}
	cr_assert_str_eq(p, "");
	smap_close(&m);
}

/* ---- sizes ------------------------------------------------------------- */

Test(smstore, sizes_and_usage)
{
	struct smap m;
	unsigned nslots;
	uint32_t records, recs;
	uint64_t bytes, used;
	const char *error = NULL;

	cr_assert_eq(smstore_size(0, 16, 65536), 0);
	cr_assert_eq(smstore_size(IPC_MAX_SLOTS + 1, 16, 65536), 0);
	cr_assert_eq(smstore_size(1, 0, 65536), 0);
	cr_assert_eq(smstore_size(1, 16, IPC_SM_BLOCK - 1), 0);
	cr_assert_eq(smstore_size(1, SMSTORE_RECORDS_MAX + 1, 65536), 0);
	cr_assert_gt(smstore_size(1, SMSTORE_RECORDS_MAX, 65536), 0);
	char small[64];
	cr_assert_eq(smstore_init(small, sizeof(small), 1, 16, 65536, &error),
		     -1);
	smap_open(&m, 3, 10, 100 * IPC_SM_BLOCK + 17);
	smstore_capacity(m.s, &nslots, &records, &bytes);
	cr_assert_eq(nslots, 3);
	cr_assert_eq(records, 10);
	cr_assert_eq(bytes, 100u * IPC_SM_BLOCK);
	struct sm_ref a = open_rec(&m, 2, "a@b/c", 1, 1, NULL);
	open_rec(&m, 2, "a@b/d", 2, 0, NULL);
	char *p = big(IPC_SM_BLOCK_DATA + 1, 1);
	append(&m, &a, p);
	append(&m, &a, "<x/>");
	free(p);
	smstore_usage(m.s, 2, &recs, &used);
	cr_assert_eq(recs, 2);
	cr_assert_eq(used, 3u * IPC_SM_BLOCK);
	smstore_usage(m.s, 0, &recs, &used);
	cr_assert_eq(recs, 0);
	cr_assert_eq(used, 0);
	smstore_usage(m.s, 7, &recs, &used);
	cr_assert_eq(recs, 0);
	/* A second handle on the same area (another process's view). */
	struct smstore *s2 = smstore_attach(m.mem, &error);
	cr_assert_not_null(s2);
	smstore_usage(s2, 2, &recs, &used);
	cr_assert_eq(recs, 2);
	smstore_detach(&s2);
	/* Not an area. */
	memset(small, 0, sizeof(small));
	cr_assert_null(smstore_attach(small, &error));
	smap_close(&m);
}
