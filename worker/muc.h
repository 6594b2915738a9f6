/*
 * muc.h - what the parts of the multi-user chat service share (XEP-0045;
 * docs/DESIGN.md "Group chat"): muc.c (the service, its rooms, occupants,
 * roles and affiliations, fan-out across workers), muc_form.c (the
 * room's configuration: defaults, stored text, the muc#roomconfig form,
 * disco#info and muc#roominfo) and muc_archive.c (the room's archive:
 * XEP-0313 on rooms and the history sent on entering, in the store and
 * with the query code of personal archives).
 *
 * The service is SERVICE.HOST for each hosted domain HOST (muc.service,
 * "conference"; "" turns it off).  Each room has one owner worker,
 * muc_owner_slot(room bare JID): every stanza to the room goes there,
 * which holds the room's live state; PostgreSQL holds what survives a
 * crash or restart (muc_rooms, muc_affiliations, muc_occupants).
 */
#ifndef XMPPD_MUC_H
#define XMPPD_MUC_H

#include "worker.h"

#include <stddef.h>
#include <stdint.h>

struct buf;
struct config;
struct xml_node;

#define NS_MUC "http://jabber.org/protocol/muc"
#define NS_MUC_USER "http://jabber.org/protocol/muc#user"
#define NS_MUC_ADMIN "http://jabber.org/protocol/muc#admin"
#define NS_MUC_OWNER "http://jabber.org/protocol/muc#owner"
#define NS_MUC_ROOMCONFIG "http://jabber.org/protocol/muc#roomconfig"
#define NS_MUC_ROOMINFO "http://jabber.org/protocol/muc#roominfo"
#define NS_MUC_REQUEST "http://jabber.org/protocol/muc#request"
#define NS_OCCUPANT_ID "urn:xmpp:occupant-id:0"

/* Affiliations (XEP-0045 section 5.2), ordered by rank. */
enum muc_aff {
	MUC_AFF_OUTCAST = -1,
	MUC_AFF_NONE = 0,
	MUC_AFF_MEMBER,
	MUC_AFF_ADMIN,
	MUC_AFF_OWNER,
};

/* Roles (section 5.1), ordered by rank. */
enum muc_role {
	MUC_ROLE_NONE = 0,
	MUC_ROLE_VISITOR,
	MUC_ROLE_PARTICIPANT,
	MUC_ROLE_MODERATOR,
};

/* Role sets (muc#roomconfig_presencebroadcast, _getmemberlist). */
#define MUC_ROLES_VISITOR (1u << MUC_ROLE_VISITOR)
#define MUC_ROLES_PARTICIPANT (1u << MUC_ROLE_PARTICIPANT)
#define MUC_ROLES_MODERATOR (1u << MUC_ROLE_MODERATOR)
#define MUC_ROLES_ALL (MUC_ROLES_VISITOR | MUC_ROLES_PARTICIPANT | \
		       MUC_ROLES_MODERATOR)

/* Who may send private messages (muc#roomconfig_allowpm). */
enum muc_allow_pm {
	MUC_PM_ANYONE = 0,
	MUC_PM_PARTICIPANTS,
	MUC_PM_MODERATORS,
	MUC_PM_NONE,
};

/* One room's configuration (section 10.2, the muc#roomconfig fields).
 * Strings are heap copies owned by the struct (muc_config_free). */
struct muc_config {
	char *name;             /* muc#roomconfig_roomname, "" none */
	char *description;      /* muc#roomconfig_roomdesc */
	char *lang;             /* muc#roomconfig_lang */
	char *password;         /* muc#roomconfig_roomsecret, "" none */
	unsigned max_users;     /* muc#roomconfig_maxusers; 0: the service's */
	unsigned presence_broadcast;    /* MUC_ROLES_* whose presence is sent */
	unsigned get_member_list;       /* MUC_ROLES_* that may list members */
	enum muc_allow_pm allow_pm;
	unsigned persistent : 1;        /* muc#roomconfig_persistentroom */
	unsigned public_list : 1;       /* muc#roomconfig_publicroom */
	unsigned members_only : 1;      /* muc#roomconfig_membersonly */
	unsigned moderated : 1;         /* muc#roomconfig_moderatedroom */
	unsigned password_protected : 1;/* muc#roomconfig_passwordprotectedroom */
	unsigned change_subject : 1;    /* muc#roomconfig_changesubject */
	unsigned allow_invites : 1;     /* muc#roomconfig_allowinvites */
	unsigned whois_anyone : 1;      /* muc#roomconfig_whois: anyone */
	unsigned logging : 1;           /* muc#roomconfig_enablelogging
					   (XEP-0313 archive of the room) */
	unsigned members_by_default : 1;/* participants, not visitors, in a
					   moderated room (muc#roomconfig_
					   defaultroles style, Prosody/ejabberd
					   "members_by_default") */
};

/* ---- muc_form.c --------------------------------------------------------- */

/* The configuration of a new room under the service's settings. 0, or -1
 * out of memory. */
int muc_config_default(struct muc_config *cf, const struct config *cfg);
void muc_config_free(struct muc_config *cf);
/* A copy of src into dst (dst freed first).  0 or -1. */
int muc_config_copy(struct muc_config *dst, const struct muc_config *src);

/* The stored text of cf (the muc_rooms.config column): "key=value"
 * lines, described at the top of muc_form.c.  0, or -1 out of memory
 * (out as it was). */
int muc_config_to_text(const struct muc_config *cf, struct buf *out);
/* Read text (len bytes, any bytes) into cf (freed first: a
 * configuration, or zeroed): the defaults of muc_config_default(),
 * then each known key; unknown keys and lines that are not key=value
 * are skipped (a later version may add keys), a value that is out of
 * range or not of its key's form keeps the default, and one warn line
 * names the first such key and how many there were.  0, or -1 out of
 * memory (cf as it was). */
int muc_config_from_text(struct muc_config *cf, const struct config *cfg,
			 const char *text, size_t len);

/* Append the owner's configuration form of cf: <x xmlns='jabber:x:data'
 * type='form'> of FORM_TYPE muc#roomconfig (XEP-0045 section 10.2, the
 * fields of example 163 cf has; the maxusers options go up to
 * muc.max_occupants).  Every value is escaped.  Out of memory: out as
 * it was. */
void muc_config_form(const struct muc_config *cf, const struct config *cfg,
		     struct buf *out);

/* Apply the data form x an owner sent in <query xmlns='...muc#owner'/>
 * to cf (section 10.1.3, 10.2):
 *  0   an <x type='submit'/> applied (fields absent keep their values;
 *      an empty one is the instant room of section 10.1.2);
 *  1   an <x type='cancel'/>: cf untouched (the caller destroys a room
 *      still locked, or keeps the configuration, section 10.1.3/10.2);
 *  -1  refused: cf untouched, *cond_r the RFC 6120 condition, type
 *      modify ("bad-request": not a submit form of FORM_TYPE
 *      muc#roomconfig, a field given twice, more than one value for a
 *      single-value field, a boolean that is not 0/1/false/true;
 *      "not-acceptable": a value the room cannot take: a list value not
 *      offered, maxusers above muc.max_occupants, a password-protected
 *      room without a secret, a name, description or secret longer than
 *      muc.max_subject_bytes, a lang that is not a language tag), or
 *      "resource-constraint" (type wait) out of memory; *text_r a short
 *      English text for the <text/> of the error.
 * muc#roomconfig_roomowners and _roomadmins are ignored (the form does
 * not offer them: affiliations are changed with muc#admin, section 9
 * and 10.3-10.7), as are other fields this server does not have. */
int muc_config_submit(struct muc_config *cf, const struct xml_node *x,
		      const struct config *cfg, const char **cond_r,
		      const char **text_r);

/* The status codes of the configuration-change message to occupants
 * (section 10.2.1) when old becomes now: 104, then 172 or 173 when
 * whois changed (this server has no fully-anonymous rooms: never 174,
 * and no public logs: never 170/171; the archive is not one).  At most max written; returns
 * how many. */
#define MUC_CONFIG_STATUS_MAX 2
unsigned muc_config_status_codes(const struct muc_config *old,
				 const struct muc_config *now,
				 unsigned *codes, unsigned max);

/* Append the children of the room's disco#info <query/> (section 6.4):
 * the conference/text identity named after the room (cf->name, else
 * room_name_fallback), its features (muc, the muc_* room types, the
 * archive's when logging, stanza ids, occupant ids, self-ping, stable
 * ids, muc#request) and the muc#roominfo form (XEP-0128) with the
 * description, subject (NULL: none), occupants, lang, name and whether
 * occupants may change the subject.  Out of memory: out as it was. */
void muc_config_disco_info(const struct muc_config *cf,
			   const char *room_name_fallback, const char *subject,
			   unsigned occupants, struct buf *out);

/* The room's owner slot: every stanza to room_bare (prepared, lower-case)
 * is handled there.  FNV-1a like s2s_owner_slot. */
unsigned muc_owner_slot(const struct worker *w, const char *room_bare);

#endif
