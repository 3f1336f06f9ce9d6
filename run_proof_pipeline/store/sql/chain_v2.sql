-- Hash chain format v2 (docs/hash-chain-v2.md) in stock PostgreSQL: C2, RFC 8785 canonical
-- JSON with exact numbers, and the header, step and seal records and hashes of format v2.
-- docs/sql-canonical.md ("Format v2") describes every function and rule.
--
-- Installed by run_proof_pipeline.store.sql.chain_v2_sql(schema), after canonical_json.sql
-- in the same schema (this file calls its run_proof_es6_layout, run_proof_shortest_double,
-- run_proof_jcs_double, run_proof_utf16_sort_key and run_proof_canonical_timestamp). Same
-- conventions as that file: every function created and called schema-qualified,
-- every function pinned (its pins line, PINS_SQL in __init__.py), IMMUTABLE and PARALLEL SAFE,
-- CREATE OR REPLACE only. No function raises on any argument: a NULL result means that the
-- value cannot be represented (a JSON value nested deeper than 128 levels, a NaN or infinite
-- double or numeric, a timestamp outside the years 1-9999, a previous hash that is not 64
-- lowercase hex digits), and the *_problem functions say why. SQL NULL as an argument is
-- JSON null.

-- C2 of one exact number (docs/hash-chain-v2.md, "exact numbers"): ES6(d) of the double d
-- nearest to p_value when d is finite and ES6(d), read as a decimal, is p_value itself;
-- otherwise the exact form, trim_scale(p_value)::text (numeric_out never writes an
-- exponent; trim_scale drops trailing fraction zeros). NULL only for the numerics NaN and
-- +-Infinity, which have no decimal value (jsonb cannot hold them; a numeric column can).
CREATE OR REPLACE FUNCTION @schema@.run_proof_jcs2_number(p_value numeric) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
@pins@
AS $$
DECLARE
    v_abs numeric;
    v_double double precision;
    v_text text;
BEGIN
    IF p_value = 0 THEN
        RETURN '0';
    END IF;
    IF p_value IN ('NaN'::numeric, 'Infinity'::numeric, '-Infinity'::numeric) THEN
        RETURN NULL;
    END IF;
    v_abs := abs(p_value);
    -- The nearest double is infinite from 2^1024 - 2^970 on (DBL_MAX plus half an ulp, a
    -- tie rounding up), and zero up to 2^-1075 (a tie rounding to even, i.e. to zero): no
    -- ES6(d) equals p_value there, so it is written exactly. The float8 cast would raise.
    IF v_abs > 1e308 AND v_abs >= power(2::numeric, 1024) - power(2::numeric, 970) THEN
        RETURN trim_scale(p_value)::text;
    END IF;
    IF v_abs < 1e-300 AND v_abs * power(2::numeric, 1075) <= 1 THEN
        RETURN trim_scale(p_value)::text;
    END IF;
    -- numeric -> float8 goes through numeric_out and strtod: correctly rounded, ties to even.
    v_double := p_value::double precision;
    v_text := v_double::text;
    IF strpos(v_text, 'e') > 0 THEN
        v_text := @schema@.run_proof_es6_layout(@schema@.run_proof_shortest_double(v_double));
    END IF;
    IF v_text::numeric = p_value THEN  -- numeric comparison is exact
        RETURN v_text;
    END IF;
    RETURN trim_scale(p_value)::text;
END $$;

-- The nesting of a jsonb value (docs/json-nesting.md): an array or object counts one level,
-- a scalar none. Level by level, one statement per level, no recursion: linear in the size
-- of the value, whatever its depth.
CREATE OR REPLACE FUNCTION @schema@.run_proof_jcs2_depth(p_value jsonb) RETURNS integer
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
@pins@
AS $$
DECLARE
    v_level jsonb[];
    v_depth integer := 0;
BEGIN
    IF p_value IS NULL OR jsonb_typeof(p_value) NOT IN ('object', 'array') THEN
        RETURN 0;
    END IF;
    v_level := ARRAY[p_value];
    WHILE v_level IS NOT NULL LOOP
        v_depth := v_depth + 1;
        -- the containers one level down (jsonb_each / jsonb_array_elements get an empty
        -- container of their kind for the other kind, never raising)
        SELECT array_agg(c.value) INTO v_level
        FROM (
            SELECT e.value
            FROM unnest(v_level) u(x)
            CROSS JOIN LATERAL jsonb_each(
                CASE WHEN jsonb_typeof(u.x) = 'object' THEN u.x ELSE '{}'::jsonb END) e
            UNION ALL
            SELECT a.value
            FROM unnest(v_level) u(x)
            CROSS JOIN LATERAL jsonb_array_elements(
                CASE WHEN jsonb_typeof(u.x) = 'array' THEN u.x ELSE '[]'::jsonb END) a
        ) c
        WHERE jsonb_typeof(c.value) IN ('object', 'array');
    END LOOP;
    RETURN v_depth;
END $$;

-- C2 of a jsonb value of any depth without recursion of function calls (run_proof_jcs2_node
-- hands a value over 32 levels down; p_depth: the levels above p_value). A loop with an
-- explicit stack, as run_proof_jcs_walk of format v1 (docs/sql-canonical.md): a container
-- pushes its closing bracket, then its members in reverse canonical order, each as its ready
-- text or, for a nested container, its text before it and the container. NULL as soon as a
-- container sits deeper than 128 levels (docs/json-nesting.md); numbers never make it NULL.
CREATE OR REPLACE FUNCTION @schema@.run_proof_jcs2_walk(p_value jsonb, p_depth integer)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
@pins@
AS $$
DECLARE
    v_texts text[] := ARRAY[NULL]::text[];   -- a stack entry: a text to write, or NULL...
    v_values jsonb[] := ARRAY[p_value];      -- ...and then the value to expand here,
    v_depths integer[] := ARRAY[p_depth];    -- with the levels above it
    v_top integer := 1;
    v_parts text[] := ARRAY[]::text[];
    v_count integer := 0;
    v_value jsonb;
    v_depth integer;
    v_kind text;
    v_prefixes text[];
    v_tokens text[];
    v_children jsonb[];
    v_n integer;
BEGIN
    IF p_depth IS NULL THEN
        RETURN NULL;
    END IF;
    IF p_value IS NULL THEN
        RETURN 'null';
    END IF;
    WHILE v_top > 0 LOOP
        IF v_texts[v_top] IS NOT NULL THEN
            v_count := v_count + 1;
            v_parts[v_count] := v_texts[v_top];
            v_top := v_top - 1;
            CONTINUE;
        END IF;
        v_value := v_values[v_top];
        v_depth := v_depths[v_top] + 1;  -- this value's level, if it is a container
        v_top := v_top - 1;
        v_kind := jsonb_typeof(v_value);
        IF v_kind = 'object' THEN
            IF v_depth > 128 THEN
                RETURN NULL;  -- docs/json-nesting.md: at most 128 levels
            END IF;
            SELECT array_agg(c.prefix ORDER BY c.sort_key DESC),
                   array_agg(c.token ORDER BY c.sort_key DESC),
                   array_agg(c.child ORDER BY c.sort_key DESC)
            INTO v_prefixes, v_tokens, v_children
            FROM (
                SELECT CASE WHEN octet_length(e.key) = length(e.key)
                            THEN convert_to(e.key, 'UTF8')
                            ELSE @schema@.run_proof_utf16_sort_key(e.key) END AS sort_key,
                       to_json(e.key)::text || ':' AS prefix,
                       CASE jsonb_typeof(e.value)
                           WHEN 'object' THEN NULL
                           WHEN 'array' THEN NULL
                           WHEN 'number' THEN CASE
                               WHEN octet_length(e.value::text) <= 15 AND e.value::text ~
                                   E'^-?(?:[1-9][0-9]*(?:\\.[0-9]*[1-9])?|0\\.0{0,5}[1-9](?:[0-9]*[1-9])?|0)$'
                                   THEN e.value::text
                               ELSE @schema@.run_proof_jcs2_number(e.value::numeric) END
                           ELSE e.value::text
                       END AS token,
                       e.value AS child
                FROM jsonb_each(v_value) e
            ) c;
            v_count := v_count + 1;
            v_parts[v_count] := '{';
            v_top := v_top + 1;
            v_texts[v_top] := '}';
        ELSIF v_kind = 'array' THEN
            IF v_depth > 128 THEN
                RETURN NULL;
            END IF;
            SELECT array_agg(''::text ORDER BY a.ordinality DESC),
                   array_agg(CASE jsonb_typeof(a.value)
                           WHEN 'object' THEN NULL
                           WHEN 'array' THEN NULL
                           WHEN 'number' THEN CASE
                               WHEN octet_length(a.value::text) <= 15 AND a.value::text ~
                                   E'^-?(?:[1-9][0-9]*(?:\\.[0-9]*[1-9])?|0\\.0{0,5}[1-9](?:[0-9]*[1-9])?|0)$'
                                   THEN a.value::text
                               ELSE @schema@.run_proof_jcs2_number(a.value::numeric) END
                           ELSE a.value::text
                       END ORDER BY a.ordinality DESC),
                   array_agg(a.value ORDER BY a.ordinality DESC)
            INTO v_prefixes, v_tokens, v_children
            FROM jsonb_array_elements(v_value) WITH ORDINALITY a(value, ordinality);
            v_count := v_count + 1;
            v_parts[v_count] := '[';
            v_top := v_top + 1;
            v_texts[v_top] := ']';
        ELSE
            v_count := v_count + 1;  -- a scalar is written whole
            v_parts[v_count] := CASE WHEN v_kind = 'number'
                THEN @schema@.run_proof_jcs2_number(v_value::numeric) ELSE v_value::text END;
            IF v_parts[v_count] IS NULL THEN
                RETURN NULL;
            END IF;
            CONTINUE;
        END IF;
        v_n := coalesce(array_length(v_prefixes, 1), 0);
        FOR v_i IN 1 .. v_n LOOP
            IF v_tokens[v_i] IS NULL THEN
                -- a container: expanded when popped, after its separator and key
                v_top := v_top + 1;
                v_texts[v_top] := NULL;
                v_values[v_top] := v_children[v_i];
                v_depths[v_top] := v_depth;
                v_top := v_top + 1;
                v_texts[v_top] := CASE WHEN v_i < v_n THEN ',' ELSE '' END || v_prefixes[v_i];
            ELSE
                v_top := v_top + 1;
                v_texts[v_top] := CASE WHEN v_i < v_n THEN ',' ELSE '' END || v_prefixes[v_i]
                    || v_tokens[v_i];
            END IF;
        END LOOP;
    END LOOP;
    RETURN array_to_string(v_parts, '');
END $$;

-- C2 of a jsonb value, one container per call, as run_proof_jcs_node of format v1
-- (docs/sql-canonical.md: UTF-16 key order, jsonb's string escapes, the 15-character number
-- fast path), with numbers by run_proof_jcs2_number. From 32 levels down the value goes to
-- run_proof_jcs2_walk. SQL NULL gives 'null'; NULL means nesting deeper than 128 levels.
CREATE OR REPLACE FUNCTION @schema@.run_proof_jcs2_node(p_value jsonb, p_depth integer)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
@pins@
AS $$
DECLARE
    v_kind text;
    v_out text;
BEGIN
    IF p_depth IS NULL THEN
        RETURN NULL;
    END IF;
    IF p_value IS NULL THEN
        RETURN 'null';
    END IF;
    IF p_depth >= 32 THEN
        RETURN @schema@.run_proof_jcs2_walk(p_value, p_depth);
    END IF;
    v_kind := jsonb_typeof(p_value);
    -- A member that cannot be represented (NULL) is written as U+0001, which canonical
    -- JSON never holds (JCS escapes every control character): string_agg would skip it.
    IF v_kind = 'object' THEN
        SELECT '{' || string_agg(to_json(e.key)::text || ':' || coalesce(CASE jsonb_typeof(e.value)
                   WHEN 'number' THEN CASE
                       WHEN octet_length(e.value::text) <= 15 AND e.value::text
                           ~ E'^-?(?:[1-9][0-9]*(?:\\.[0-9]*[1-9])?|0\\.0{0,5}[1-9](?:[0-9]*[1-9])?|0)$'
                           THEN e.value::text
                       ELSE @schema@.run_proof_jcs2_number(e.value::numeric) END
                   WHEN 'object' THEN @schema@.run_proof_jcs2_node(e.value, p_depth + 1)
                   WHEN 'array' THEN @schema@.run_proof_jcs2_node(e.value, p_depth + 1)
                   ELSE e.value::text
               END, chr(1)), ',' ORDER BY CASE WHEN octet_length(e.key) = length(e.key)
                   THEN convert_to(e.key, 'UTF8')
                   ELSE @schema@.run_proof_utf16_sort_key(e.key) END) || '}'
        INTO v_out
        FROM jsonb_each(p_value) e;
        v_out := coalesce(v_out, '{}');  -- no members: string_agg gives NULL
    ELSIF v_kind = 'array' THEN
        SELECT '[' || string_agg(coalesce(CASE jsonb_typeof(a.value)
                   WHEN 'number' THEN CASE
                       WHEN octet_length(a.value::text) <= 15 AND a.value::text
                           ~ E'^-?(?:[1-9][0-9]*(?:\\.[0-9]*[1-9])?|0\\.0{0,5}[1-9](?:[0-9]*[1-9])?|0)$'
                           THEN a.value::text
                       ELSE @schema@.run_proof_jcs2_number(a.value::numeric) END
                   WHEN 'object' THEN @schema@.run_proof_jcs2_node(a.value, p_depth + 1)
                   WHEN 'array' THEN @schema@.run_proof_jcs2_node(a.value, p_depth + 1)
                   ELSE a.value::text
               END, chr(1)), ',' ORDER BY a.ordinality) || ']'
        INTO v_out
        FROM jsonb_array_elements(p_value) WITH ORDINALITY a(value, ordinality);
        v_out := coalesce(v_out, '[]');
    ELSIF v_kind = 'number' THEN
        RETURN @schema@.run_proof_jcs2_number(p_value::numeric);
    ELSE
        RETURN p_value::text;
    END IF;
    IF strpos(v_out, chr(1)) > 0 THEN
        RETURN NULL;
    END IF;
    RETURN v_out;
END $$;

-- C2(value): SQL NULL is 'null'; NULL only for a value nested deeper than 128 levels.
CREATE OR REPLACE FUNCTION @schema@.run_proof_jcs2(value jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
@pins@
AS $$
BEGIN
    RETURN @schema@.run_proof_jcs2_node(value, 0);
END $$;

-- Why run_proof_jcs2(value) is NULL: `(root): nesting: 129 levels` (the whole depth); NULL
-- when it is not.
CREATE OR REPLACE FUNCTION @schema@.run_proof_jcs2_problem(value jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
@pins@
AS $$
DECLARE
    v_depth integer := @schema@.run_proof_jcs2_depth(value);
BEGIN
    IF v_depth > 128 THEN
        RETURN '(root): nesting: ' || v_depth::text || ' levels';
    END IF;
    RETURN NULL;
END $$;

-- Why a double field cannot be represented (NaN, Infinity, -Infinity), else NULL.
CREATE OR REPLACE FUNCTION @schema@.run_proof_v2_double_problem(p_value double precision)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
@pins@
AS $$
BEGIN
    IF p_value IN ('NaN'::float8, 'Infinity'::float8, '-Infinity'::float8) THEN
        RETURN p_value::text;
    END IF;
    RETURN NULL;
END $$;

-- Why a timestamp field cannot be represented: `infinity`, `-infinity`, or `year outside
-- 1-9999: <value in UTC>`; NULL when it can (or is NULL).
CREATE OR REPLACE FUNCTION @schema@.run_proof_v2_timestamp_problem(p_value timestamptz)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
@pins@
AS $$
BEGIN
    IF p_value IS NULL OR @schema@.run_proof_canonical_timestamp(p_value) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    IF p_value IN ('infinity'::timestamptz, '-infinity'::timestamptz) THEN
        RETURN p_value::text;
    END IF;
    RETURN 'year outside 1-9999: ' || p_value::text;  -- TimeZone UTC, DateStyle ISO (pinned)
END $$;

-- --- records (docs/hash-chain-v2.md, "Records") ------------------------------------------------
-- Each record is one expression with its keys in sorted (ASCII) order, written by hand.
-- Text fields through to_json (JCS's escapes), SQL NULL as null, booleans true/false,
-- integers and the numeric seed by the exact rule (digits up to +-(2^53-1), else
-- run_proof_jcs2_number), doubles in ES6 form (float8out's text where it already is, see
-- run_proof_v1_step_canonical), timestamps as run_proof_canonical_timestamp writes them.
-- Any part that cannot be represented is NULL, and so is the whole record.

CREATE OR REPLACE FUNCTION @schema@.run_proof_v2_header_canonical(
    tenant_id text, run_id text, trace_id text, agent_id text, plan_id text, plan jsonb,
    started_at timestamptz, created_at timestamptz, correlation_id text, seed numeric,
    frozen_timestamp text, plan_hash text, schema_version text, trace jsonb, stored_by text,
    checksum text, incident_id text, is_synthetic boolean, synthetic_scenario_id text,
    aos_root_hash text
) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
@pins@
AS $$
BEGIN
    RETURN '{"agent_id":' || coalesce(to_json($4)::text, 'null')
        || ',"aos_root_hash":' || coalesce(to_json($20)::text, 'null')
        || ',"checksum":' || coalesce(to_json($16)::text, 'null')
        || ',"correlation_id":' || coalesce(to_json($9)::text, 'null')
        || ',"created_at":' || CASE WHEN $8 IS NULL THEN 'null' ELSE
               '"' || @schema@.run_proof_canonical_timestamp($8) || '"' END
        || ',"frozen_timestamp":' || coalesce(to_json($11)::text, 'null')
        || ',"incident_id":' || coalesce(to_json($17)::text, 'null')
        || ',"is_synthetic":' || CASE WHEN $18 THEN 'true' WHEN NOT $18 THEN 'false'
               ELSE 'null' END
        || ',"kind":"trace"'
        || ',"plan":' || @schema@.run_proof_jcs2_node($6, 0)
        || ',"plan_hash":' || coalesce(to_json($12)::text, 'null')
        || ',"plan_id":' || coalesce(to_json($5)::text, 'null')
        || ',"run_id":' || coalesce(to_json($2)::text, 'null')
        || ',"schema_version":' || coalesce(to_json($13)::text, 'null')
        || ',"seed":' || CASE WHEN $10 IS NULL THEN 'null' ELSE
               @schema@.run_proof_jcs2_number($10) END
        || ',"started_at":' || CASE WHEN $7 IS NULL THEN 'null' ELSE
               '"' || @schema@.run_proof_canonical_timestamp($7) || '"' END
        || ',"stored_by":' || coalesce(to_json($15)::text, 'null')
        || ',"synthetic_scenario_id":' || coalesce(to_json($19)::text, 'null')
        || ',"tenant_id":' || coalesce(to_json($1)::text, 'null')
        || ',"trace":' || @schema@.run_proof_jcs2_node($14, 0)
        || ',"trace_id":' || coalesce(to_json($3)::text, 'null')
        || ',"v":2}';
END $$;

-- genesis_hash = H(C2(header)), 64 lowercase hex; NULL when the header cannot be hashed.
CREATE OR REPLACE FUNCTION @schema@.run_proof_v2_genesis_hash(
    tenant_id text, run_id text, trace_id text, agent_id text, plan_id text, plan jsonb,
    started_at timestamptz, created_at timestamptz, correlation_id text, seed numeric,
    frozen_timestamp text, plan_hash text, schema_version text, trace jsonb, stored_by text,
    checksum text, incident_id text, is_synthetic boolean, synthetic_scenario_id text,
    aos_root_hash text
) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
@pins@
AS $$
BEGIN
    RETURN encode(sha256(convert_to(@schema@.run_proof_v2_header_canonical(
        $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
        $19, $20), 'UTF8')), 'hex');
END $$;

-- Why the header cannot be hashed, `<field>: <reason>` for the first such field in key
-- order (`plan: (root): nesting: 129 levels`, `started_at: infinity`); NULL when it can.
CREATE OR REPLACE FUNCTION @schema@.run_proof_v2_header_problem(
    tenant_id text, run_id text, trace_id text, agent_id text, plan_id text, plan jsonb,
    started_at timestamptz, created_at timestamptz, correlation_id text, seed numeric,
    frozen_timestamp text, plan_hash text, schema_version text, trace jsonb, stored_by text,
    checksum text, incident_id text, is_synthetic boolean, synthetic_scenario_id text,
    aos_root_hash text
) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
@pins@
AS $$
BEGIN
    RETURN coalesce(
        'created_at: ' || @schema@.run_proof_v2_timestamp_problem($8),
        'plan: ' || @schema@.run_proof_jcs2_problem($6),
        CASE WHEN $10 IN ('NaN'::numeric, 'Infinity'::numeric, '-Infinity'::numeric)
            THEN 'seed: ' || $10::text END,
        'started_at: ' || @schema@.run_proof_v2_timestamp_problem($7),
        'trace: ' || @schema@.run_proof_jcs2_problem($14));
END $$;

-- C2(step). The two doubles and the two integers are written here in their common forms
-- (a call less each, per step), their rare forms through run_proof_jcs_double (NULL for NaN
-- and the infinities) and run_proof_jcs2_number.
CREATE OR REPLACE FUNCTION @schema@.run_proof_v2_step_canonical(
    tenant_id text, run_id text, trace_id text, step_index bigint, skill_id text,
    skill_name text, params jsonb, status text, outcome_category text, outcome_code text,
    outcome_data jsonb, cost_cents double precision, duration_ms double precision,
    retry_count bigint, "timestamp" timestamptz, input_hash text, output_hash text,
    rng_state_before text, idempotency_key text, replay_behavior text, source text,
    level text, is_synthetic boolean, synthetic_scenario_id text
) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
@pins@
AS $$
DECLARE
    v_cost text := $12::text;
    v_duration text := $13::text;
BEGIN
    -- float8out without an exponent, other than -0, NaN and Infinity: the ES6 form already
    IF v_cost IS NULL THEN
        v_cost := 'null';
    ELSIF strpos(v_cost, 'e') > 0 OR NOT v_cost ~ '^-?[0-9]' OR $12 = 0 THEN
        v_cost := @schema@.run_proof_jcs_double($12);
    END IF;
    IF v_duration IS NULL THEN
        v_duration := 'null';
    ELSIF strpos(v_duration, 'e') > 0 OR NOT v_duration ~ '^-?[0-9]' OR $13 = 0 THEN
        v_duration := @schema@.run_proof_jcs_double($13);
    END IF;
    RETURN '{"cost_cents":' || v_cost
        || ',"duration_ms":' || v_duration
        || ',"idempotency_key":' || coalesce(to_json($19)::text, 'null')
        || ',"input_hash":' || coalesce(to_json($16)::text, 'null')
        || ',"is_synthetic":' || CASE WHEN $23 THEN 'true' WHEN NOT $23 THEN 'false'
               ELSE 'null' END
        || ',"kind":"step"'
        || ',"level":' || coalesce(to_json($22)::text, 'null')
        || ',"outcome_category":' || coalesce(to_json($9)::text, 'null')
        || ',"outcome_code":' || coalesce(to_json($10)::text, 'null')
        || ',"outcome_data":' || @schema@.run_proof_jcs2_node($11, 0)
        || ',"output_hash":' || coalesce(to_json($17)::text, 'null')
        || ',"params":' || @schema@.run_proof_jcs2_node($7, 0)
        || ',"replay_behavior":' || coalesce(to_json($20)::text, 'null')
        || ',"retry_count":' || CASE WHEN $14 IS NULL THEN 'null'
               WHEN $14 BETWEEN -9007199254740991 AND 9007199254740991 THEN $14::text
               ELSE @schema@.run_proof_jcs2_number($14::numeric) END
        || ',"rng_state_before":' || coalesce(to_json($18)::text, 'null')
        || ',"run_id":' || coalesce(to_json($2)::text, 'null')
        || ',"skill_id":' || coalesce(to_json($5)::text, 'null')
        || ',"skill_name":' || coalesce(to_json($6)::text, 'null')
        || ',"source":' || coalesce(to_json($21)::text, 'null')
        || ',"status":' || coalesce(to_json($8)::text, 'null')
        || ',"step_index":' || CASE WHEN $4 IS NULL THEN 'null'
               WHEN $4 BETWEEN -9007199254740991 AND 9007199254740991 THEN $4::text
               ELSE @schema@.run_proof_jcs2_number($4::numeric) END
        || ',"synthetic_scenario_id":' || coalesce(to_json($24)::text, 'null')
        || ',"tenant_id":' || coalesce(to_json($1)::text, 'null')
        || ',"timestamp":' || CASE WHEN $15 IS NULL THEN 'null'
               -- run_proof_canonical_timestamp, inline (a call less per step)
               WHEN $15 >= '0001-01-01 00:00:00+00'::timestamptz
                   AND $15 < '10000-01-01 00:00:00+00'::timestamptz
               THEN '"' || to_char($15 AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '"'
               END
        || ',"trace_id":' || coalesce(to_json($3)::text, 'null')
        || ',"v":2}';
END $$;

-- step_hash = H(prev || C2(step)), prev the raw 32 bytes of the previous step hash (or of the
-- genesis hash), given as 64 lowercase hex digits; NULL when prev is not that or the step
-- cannot be hashed. It runs inside every step INSERT, so it holds run_proof_v2_step_canonical's
-- body itself, arguments shifted by one (a pinned call less per step); the tests hold the two
-- to H(prev || canonical) on random steps.
CREATE OR REPLACE FUNCTION @schema@.run_proof_v2_step_hash(
    prev_hash text,
    tenant_id text, run_id text, trace_id text, step_index bigint, skill_id text,
    skill_name text, params jsonb, status text, outcome_category text, outcome_code text,
    outcome_data jsonb, cost_cents double precision, duration_ms double precision,
    retry_count bigint, "timestamp" timestamptz, input_hash text, output_hash text,
    rng_state_before text, idempotency_key text, replay_behavior text, source text,
    level text, is_synthetic boolean, synthetic_scenario_id text
) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
@pins@
AS $$
DECLARE
    v_cost text := $13::text;
    v_duration text := $14::text;
BEGIN
    IF $1 IS NULL OR $1 !~ '^[0-9a-f]{64}$' THEN
        RETURN NULL;
    END IF;
    -- float8out without an exponent, other than -0, NaN and Infinity: the ES6 form already
    IF v_cost IS NULL THEN
        v_cost := 'null';
    ELSIF strpos(v_cost, 'e') > 0 OR NOT v_cost ~ '^-?[0-9]' OR $13 = 0 THEN
        v_cost := @schema@.run_proof_jcs_double($13);
    END IF;
    IF v_duration IS NULL THEN
        v_duration := 'null';
    ELSIF strpos(v_duration, 'e') > 0 OR NOT v_duration ~ '^-?[0-9]' OR $14 = 0 THEN
        v_duration := @schema@.run_proof_jcs_double($14);
    END IF;
    RETURN encode(sha256(decode($1, 'hex') || convert_to('{"cost_cents":' || v_cost
        || ',"duration_ms":' || v_duration
        || ',"idempotency_key":' || coalesce(to_json($20)::text, 'null')
        || ',"input_hash":' || coalesce(to_json($17)::text, 'null')
        || ',"is_synthetic":' || CASE WHEN $24 THEN 'true' WHEN NOT $24 THEN 'false'
               ELSE 'null' END
        || ',"kind":"step"'
        || ',"level":' || coalesce(to_json($23)::text, 'null')
        || ',"outcome_category":' || coalesce(to_json($10)::text, 'null')
        || ',"outcome_code":' || coalesce(to_json($11)::text, 'null')
        || ',"outcome_data":' || @schema@.run_proof_jcs2_node($12, 0)
        || ',"output_hash":' || coalesce(to_json($18)::text, 'null')
        || ',"params":' || @schema@.run_proof_jcs2_node($8, 0)
        || ',"replay_behavior":' || coalesce(to_json($21)::text, 'null')
        || ',"retry_count":' || CASE WHEN $15 IS NULL THEN 'null'
               WHEN $15 BETWEEN -9007199254740991 AND 9007199254740991 THEN $15::text
               ELSE @schema@.run_proof_jcs2_number($15::numeric) END
        || ',"rng_state_before":' || coalesce(to_json($19)::text, 'null')
        || ',"run_id":' || coalesce(to_json($3)::text, 'null')
        || ',"skill_id":' || coalesce(to_json($6)::text, 'null')
        || ',"skill_name":' || coalesce(to_json($7)::text, 'null')
        || ',"source":' || coalesce(to_json($22)::text, 'null')
        || ',"status":' || coalesce(to_json($9)::text, 'null')
        || ',"step_index":' || CASE WHEN $5 IS NULL THEN 'null'
               WHEN $5 BETWEEN -9007199254740991 AND 9007199254740991 THEN $5::text
               ELSE @schema@.run_proof_jcs2_number($5::numeric) END
        || ',"synthetic_scenario_id":' || coalesce(to_json($25)::text, 'null')
        || ',"tenant_id":' || coalesce(to_json($2)::text, 'null')
        || ',"timestamp":' || CASE WHEN $16 IS NULL THEN 'null'
               -- run_proof_canonical_timestamp, inline (a call less per step)
               WHEN $16 >= '0001-01-01 00:00:00+00'::timestamptz
                   AND $16 < '10000-01-01 00:00:00+00'::timestamptz
               THEN '"' || to_char($16 AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '"'
               END
        || ',"trace_id":' || coalesce(to_json($4)::text, 'null')
        || ',"v":2}', 'UTF8')), 'hex');
END $$;

-- Why the step cannot be hashed, `<field>: <reason>` for the first such field in key order
-- (`cost_cents: NaN`, `params: (root): nesting: 129 levels`, `timestamp: infinity`); NULL
-- when it can.
CREATE OR REPLACE FUNCTION @schema@.run_proof_v2_step_problem(
    tenant_id text, run_id text, trace_id text, step_index bigint, skill_id text,
    skill_name text, params jsonb, status text, outcome_category text, outcome_code text,
    outcome_data jsonb, cost_cents double precision, duration_ms double precision,
    retry_count bigint, "timestamp" timestamptz, input_hash text, output_hash text,
    rng_state_before text, idempotency_key text, replay_behavior text, source text,
    level text, is_synthetic boolean, synthetic_scenario_id text
) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
@pins@
AS $$
BEGIN
    RETURN coalesce(
        'cost_cents: ' || @schema@.run_proof_v2_double_problem($12),
        'duration_ms: ' || @schema@.run_proof_v2_double_problem($13),
        'outcome_data: ' || @schema@.run_proof_jcs2_problem($11),
        'params: ' || @schema@.run_proof_jcs2_problem($7),
        'timestamp: ' || @schema@.run_proof_v2_timestamp_problem($15));
END $$;

CREATE OR REPLACE FUNCTION @schema@.run_proof_v2_seal_canonical(
    tenant_id text, run_id text, trace_id text, status text, completed_at timestamptz,
    chain_length bigint, metadata jsonb
) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
@pins@
AS $$
BEGIN
    RETURN '{"chain_length":' || CASE WHEN $6 IS NULL THEN 'null'
               WHEN $6 BETWEEN -9007199254740991 AND 9007199254740991 THEN $6::text
               ELSE @schema@.run_proof_jcs2_number($6::numeric) END
        || ',"completed_at":' || CASE WHEN $5 IS NULL THEN 'null' ELSE
               '"' || @schema@.run_proof_canonical_timestamp($5) || '"' END
        || ',"kind":"seal"'
        || ',"metadata":' || @schema@.run_proof_jcs2_node($7, 0)
        || ',"run_id":' || coalesce(to_json($2)::text, 'null')
        || ',"status":' || coalesce(to_json($4)::text, 'null')
        || ',"tenant_id":' || coalesce(to_json($1)::text, 'null')
        || ',"trace_id":' || coalesce(to_json($3)::text, 'null')
        || ',"v":2}';
END $$;

-- seal_hash = H(head || C2(seal)), head the hash at the chain's end (the last step hash, or
-- the genesis hash) in hex; NULL when head is not 64 lowercase hex digits or the seal cannot
-- be hashed.
CREATE OR REPLACE FUNCTION @schema@.run_proof_v2_seal_hash(
    head_hash text, tenant_id text, run_id text, trace_id text, status text,
    completed_at timestamptz, chain_length bigint, metadata jsonb
) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
@pins@
AS $$
BEGIN
    IF $1 IS NULL OR $1 !~ '^[0-9a-f]{64}$' THEN
        RETURN NULL;
    END IF;
    RETURN encode(sha256(decode($1, 'hex') || convert_to(@schema@.run_proof_v2_seal_canonical(
        $2, $3, $4, $5, $6, $7, $8), 'UTF8')), 'hex');
END $$;

-- Why the seal cannot be hashed (`completed_at: infinity`, `metadata: (root): nesting: ...`);
-- NULL when it can.
CREATE OR REPLACE FUNCTION @schema@.run_proof_v2_seal_problem(
    tenant_id text, run_id text, trace_id text, status text, completed_at timestamptz,
    chain_length bigint, metadata jsonb
) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
@pins@
AS $$
BEGIN
    RETURN coalesce(
        'completed_at: ' || @schema@.run_proof_v2_timestamp_problem($5),
        'metadata: ' || @schema@.run_proof_jcs2_problem($7));
END $$;
