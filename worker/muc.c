/*
 * muc.c - the multi-user chat service (XEP-0045).  Being written; this
 * descriptor names its settings and schema.
 */
#include "muc.h"
#include "ext.h"

#include <ctype.h>

unsigned muc_owner_slot(const struct worker *w, const char *room_bare)
{
	uint32_t h = 2166136261u;
	for (const char *p = room_bare; *p != '\0'; p++)
		h = (h ^ (uint8_t)tolower((unsigned char)*p)) * 16777619u;
	return w->nslots > 0 ? h % w->nslots : 0;
}

static const char *const muc_config_keys[] = {
	"muc.service", "muc.max_rooms", "muc.max_occupants",
	"muc.max_rooms_per_account", "muc.create", "muc.history_default",
	"muc.history_max", "muc.messages_per_minute",
	"muc.max_subject_bytes", "muc.max_nick_bytes",
	"muc.max_presence_bytes", "muc.max_affiliations", NULL,
};
static const char *const muc_schema[] = { "018-muc.sql", NULL };

const struct ext muc_ext = {
	.name = "muc",
	.config_keys = muc_config_keys,
	.schema = muc_schema,
};
