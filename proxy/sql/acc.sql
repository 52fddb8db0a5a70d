-- siplb accounting tables for PostgreSQL (the `postgres` sink of [acc]).
--
-- siplb runs this file itself on every connection (every statement is IF NOT EXISTS), so a
-- fresh database works as is; operators may also run it by hand first:
--     psql -d siplb -f proxy/sql/acc.sql
-- The columns are those of docs/CDR.md, in the same order. A record's (node, id) is unique
-- across nodes and restarts; it is the primary key, so a batch shipped again after a lost
-- connection lands once. A field with no value is NULL.
--
-- Tables named by [[acc.rule]] (other than acc and missed_calls) are made by siplb on first
-- use as `CREATE TABLE IF NOT EXISTS <table> (LIKE acc INCLUDING ALL)`.

-- Kamailio's acc: one row per recorded transaction (FLT_ACC, FLT_ACCFAILED, rules).
CREATE TABLE IF NOT EXISTS acc (
    node        text NOT NULL,
    id          text NOT NULL,
    method      text,
    from_tag    text,
    to_tag      text,
    callid      text,
    sip_code    integer,
    sip_reason  text,
    time        timestamptz,
    src_user    text,
    src_domain  text,
    src_ip      text,
    dst_ouser   text,
    dst_user    text,
    dst_domain  text,
    account     text,
    gateway     text,
    PRIMARY KEY (node, id)
);

-- Kamailio's missed_calls: INVITEs that ended without 2xx (FLT_ACCMISSED).
CREATE TABLE IF NOT EXISTS missed_calls (LIKE acc INCLUDING ALL);

-- One CDR per call.
CREATE TABLE IF NOT EXISTS cdrs (
    node              text NOT NULL,
    id                text NOT NULL,
    callid            text,
    from_tag          text,
    to_tag            text,
    src_user          text,
    src_domain        text,
    src_ip            text,
    dst_ouser         text,
    dst_user          text,
    dst_domain        text,
    account           text,
    gateway           text,
    direction         text,
    attempts          integer,
    invite_time       timestamptz,
    forward_time      timestamptz,
    first_reply_time  timestamptz,
    ringing_time      timestamptz,
    answer_time       timestamptz,
    end_time          timestamptz,
    duration          numeric(12,3),
    billsec           numeric(12,3),
    pdd_ms            integer,
    sip_code          integer,
    sip_reason        text,
    q850_cause        integer,
    disposition       text,
    ended_by          text,
    vars              jsonb,
    PRIMARY KEY (node, id)
);
