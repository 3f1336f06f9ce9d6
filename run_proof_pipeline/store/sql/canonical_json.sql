-- RFC 8785 (JCS) canonical JSON and hash chain v1, in stock PostgreSQL (PL/pgSQL and the
-- core sha256(); no extension). docs/sql-canonical.md describes every function and rule.
--
-- Installed by run_proof_pipeline.store.sql.canonical_json_sql(schema), which replaces every
-- @schema@ with the quoted schema name: the functions are created schema-qualified, and
-- each calls its siblings schema-qualified, so no search_path is trusted at install time
-- or at call time. Idempotent: CREATE OR REPLACE only, no state. Needs a UTF8 database.
--
-- Every function pins, with SET clauses, each setting a result could depend on, so that a
-- hostile session (or role or database default) cannot change one. The clauses are written
-- once, as PINS_SQL in __init__.py; canonical_json_sql puts them in place of each
-- function's pins placeholder line (it refuses a function without one, or any other):
--   search_path = pg_catalog, pg_temp   built-ins only; pg_temp, otherwise searched first
--                                       for type names (`text`, `jsonb`), last
--   standard_conforming_strings = on    how the string literals of the bodies are read
--                                       (those holding a backslash are E'' strings anyway)
--   extra_float_digits = 1              float8 text is the shortest round-trip form (PG 12+)
--   TimeZone, DateStyle, IntervalStyle  how timestamp literals of the bodies are read;
--                                       output goes through AT TIME ZONE 'UTC' and to_char
--   plan_cache_mode = force_generic_plan  results never depend on the plan, but a session
--                                       forcing custom plans made every call 2.7x slower
-- A function is IMMUTABLE when its result depends on its arguments only, which the pins
-- make true even where it calls a STABLE built-in (to_json, convert_to, to_char with a
-- fixed, locale-free pattern).
--
-- Results: a canonical text or hash, or NULL when a value cannot be represented, never an
-- exception: a number the stored-number rule refuses (docs/stored-numbers.md), in "exact"
-- mode also a number its canonical form would round, a non-finite double, a timestamp
-- outside the years 1-9999, a previous hash that is not 64 lowercase hex digits.
-- SQL NULL as an *argument* is JSON null, as the spec says.

-- ES6 Number::toString layout (RFC 8785 section 3.2.2.3) of a decimal written in any form
-- float8out prints: `0.30000000000000004`, `100`, `1e+21`, `1.5e-07`.
CREATE OR REPLACE FUNCTION @schema@.run_proof_es6_layout(p_text text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
@pins@
AS $$
DECLARE
    v_parts text[];
    v_sign text;
    v_all text;
    v_digits text;
    v_k integer;
    v_n integer;
    v_e integer;
BEGIN
    v_parts := regexp_match(p_text, E'^(-?)([0-9]+)(?:\\.([0-9]+))?(?:[eE]([-+]?[0-9]+))?$');
    IF v_parts IS NULL THEN
        RETURN NULL;
    END IF;
    v_sign := v_parts[1];
    v_all := v_parts[2] || coalesce(v_parts[3], '');
    v_digits := ltrim(v_all, '0');
    -- value = 0.<v_digits> x 10^v_n, v_digits without leading (and below, trailing) zeros
    v_n := length(v_parts[2]) + coalesce(v_parts[4]::integer, 0)
        - (length(v_all) - length(v_digits));
    v_digits := rtrim(v_digits, '0');
    IF v_digits = '' THEN
        RETURN '0';  -- also -0: JCS writes negative zero as 0
    END IF;
    v_k := length(v_digits);
    IF v_k <= v_n AND v_n <= 21 THEN
        RETURN v_sign || v_digits || repeat('0', v_n - v_k);
    END IF;
    IF 0 < v_n AND v_n <= 21 THEN
        RETURN v_sign || substr(v_digits, 1, v_n) || '.' || substr(v_digits, v_n + 1);
    END IF;
    IF -6 < v_n AND v_n <= 0 THEN
        RETURN v_sign || '0.' || repeat('0', -v_n) || v_digits;
    END IF;
    v_e := v_n - 1;
    RETURN v_sign || substr(v_digits, 1, 1)
        || CASE WHEN v_k > 1 THEN '.' || substr(v_digits, 2) ELSE '' END
        || 'e' || CASE WHEN v_e >= 0 THEN '+' ELSE '-' END || abs(v_e)::text;
END $$;

-- The shortest decimal that reads back as a finite, non-zero p_value, in float8out's
-- form, the one ES6 picks. float8out (extra_float_digits = 1, pinned) prints the shortest
-- digits of a point strictly inside the interval of reals that round to the double (Ryu
-- without its bounds); ES6 and Python also admit its ends when a tie there rounds to the
-- double (round-half-even), so they print 1e+23 where float8out prints
-- 9.999999999999999e+22, and 34060724690242330 for 3.4060724690242328e+16. An end of the
-- interval is a short decimal only when it is an integer with trailing zeros, i.e. for
-- |x| >= 2^54 (below, an end is an odd multiple of a power of two with at least 17
-- digits, which never beats the inside). There, shorter digit counts are tried in turn:
-- the two k-digit neighbours of the exact value that read back as the double (strtod
-- rounds ties to even), the nearer one, on a tie the even one.
CREATE OR REPLACE FUNCTION @schema@.run_proof_shortest_double(p_value double precision)
RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
@pins@
AS $$
DECLARE
    v_text text := p_value::text;
    v_abs double precision := abs(p_value);
    v_bits bigint;
    v_exact numeric;
    v_digits integer;
    v_shown integer;
    v_unit numeric;
    v_low numeric;
    v_high numeric;
    v_low_reads boolean;
    v_high_reads boolean;
    v_best numeric;
BEGIN
    IF v_abs < 18014398509481984 THEN  -- 2^54
        RETURN v_text;
    END IF;
    IF v_abs IN ('Infinity'::float8, 'NaN'::float8) THEN
        RETURN NULL;  -- (PostgreSQL's NaN equals NaN and sorts above every number)
    END IF;
    -- The exact value, an integer here: (2^52 + fraction bits) x 2^(exponent - 1075).
    v_bits := ('x' || encode(float8send(v_abs), 'hex'))::bit(64)::bigint;
    v_exact := trunc(((v_bits & 4503599627370495) + 4503599627370496)
        * power(2::numeric, ((v_bits >> 52) & 2047)::integer - 1075));
    v_digits := length(v_exact::text);
    -- float8out's digit count, the longest the answer can be
    v_shown := length(rtrim(ltrim(translate(split_part(v_text, 'e', 1), '-.', ''), '0'), '0'));
    FOR v_k IN 1 .. v_shown - 1 LOOP
        v_unit := power(10::numeric, v_digits - v_k);
        v_low := trunc(div(v_exact, v_unit) * v_unit);
        v_high := v_low + v_unit;
        v_low_reads := v_low::double precision = v_abs;
        -- from 2^1024 - 2^970 on a decimal reads as infinity (the cast would raise)
        v_high_reads := v_high < power(2::numeric, 1024) - power(2::numeric, 970)
            AND v_high::double precision = v_abs;
        IF v_low_reads OR v_high_reads THEN
            IF NOT v_high_reads THEN
                v_best := v_low;
            ELSIF NOT v_low_reads THEN
                v_best := v_high;
            ELSIF v_exact - v_low <> v_high - v_exact THEN
                v_best := CASE WHEN v_exact - v_low < v_high - v_exact THEN v_low ELSE v_high END;
            ELSE
                v_best := CASE WHEN mod(div(v_low, v_unit), 2) = 0 THEN v_low ELSE v_high END;
            END IF;
            RETURN CASE WHEN p_value < 0 THEN '-' ELSE '' END || v_best::text;
        END IF;
    END LOOP;
    RETURN v_text;
END $$;

-- A finite double in ECMAScript shortest form; NULL for NaN and the infinities.
CREATE OR REPLACE FUNCTION @schema@.run_proof_jcs_double(p_value double precision) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
@pins@
AS $$
DECLARE
    v_text text;
BEGIN
    IF p_value = 0 THEN
        RETURN '0';  -- float8out writes -0 for negative zero
    END IF;
    IF p_value IN ('NaN'::float8, 'Infinity'::float8, '-Infinity'::float8) THEN
        RETURN NULL;
    END IF;
    -- extra_float_digits = 1 (pinned): the shortest digits that read back exactly, the
    -- closest to the exact value among them, as ES6 chooses (run_proof_shortest_double
    -- says where they differ, all at |x| >= 2^54). float8out writes them without exponent
    -- for 1e-4 <= |x| < 1e15, the same layout as ES6 there, and with one elsewhere
    -- (`1e+15`, `1e-05`), where ES6's layout differs.
    v_text := p_value::text;
    IF strpos(v_text, 'e') = 0 THEN
        RETURN v_text;
    END IF;
    RETURN @schema@.run_proof_es6_layout(@schema@.run_proof_shortest_double(p_value));
END $$;

-- A JSON number as stored (jsonb keeps it as numeric) in canonical form: the ES6 form of
-- the double it denotes (hash chain v1: "every JSON number is taken as the double it
-- denotes"). NULL when the stored-number rule (docs/stored-numbers.md) refuses it: the
-- nearest double is infinite (1), or zero for a non-zero number (2), or it has more than
-- 17 significant digits and is not the exact value of its double (3).
-- p_exact: also NULL when the canonical form, read as a decimal, is not the stored value
-- itself (9007199254740993, 0.10000000000000001, 2^64): hashing it as a double would round.
CREATE OR REPLACE FUNCTION @schema@.run_proof_jcs_number(p_value numeric, p_exact boolean)
RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
@pins@
AS $$
DECLARE
    v_abs numeric;
    v_double double precision;
    v_text text;
    v_bits bigint;
    v_field integer;
    v_mantissa bigint;
    v_exponent integer;
BEGIN
    IF p_value = 0 THEN
        RETURN '0';
    END IF;
    v_abs := abs(p_value);
    -- (1) From 2^1024 - 2^970 (DBL_MAX plus half an ulp: a tie, which rounds to even,
    -- i.e. up) on, the nearest double is infinite. NaN and +-Infinity numerics sort above
    -- every number and end here too. The cast below would raise for all of these.
    IF v_abs > 1e308 AND v_abs >= power(2::numeric, 1024) - power(2::numeric, 970) THEN
        RETURN NULL;
    END IF;
    -- (2) Up to 2^-1075 (half the smallest subnormal: a tie, which rounds to even, i.e. to
    -- zero) the nearest double is zero; the cast would raise. Numeric products are exact.
    IF v_abs < 1e-300 AND v_abs * power(2::numeric, 1075) <= 1 THEN
        RETURN NULL;
    END IF;
    -- numeric -> float8 goes through numeric_out and strtod: correctly rounded.
    v_double := p_value::double precision;
    v_text := v_double::text;
    IF strpos(v_text, 'e') > 0 THEN
        v_text := @schema@.run_proof_es6_layout(@schema@.run_proof_shortest_double(v_double));
    END IF;
    IF p_exact THEN
        IF v_text::numeric <> p_value THEN
            RETURN NULL;
        END IF;
        RETURN v_text;
    END IF;
    -- (3) More than 17 significant digits: accepted only as its double's exact value,
    -- mantissa x 2^exponent, read from the IEEE-754 bits.
    IF length(rtrim(ltrim(translate(v_abs::text, '.', ''), '0'), '0')) > 17 THEN
        v_bits := ('x' || encode(float8send(v_double), 'hex'))::bit(64)::bigint;
        v_field := ((v_bits >> 52) & 2047)::integer;
        v_mantissa := v_bits & 4503599627370495;  -- 2^52 - 1
        IF v_field = 0 THEN
            v_exponent := -1074;  -- subnormal
        ELSE
            v_mantissa := v_mantissa + 4503599627370496;  -- the implicit 2^52
            v_exponent := v_field - 1075;
        END IF;
        IF v_exponent >= 0 THEN
            IF v_abs <> v_mantissa * power(2::numeric, v_exponent) THEN
                RETURN NULL;
            END IF;
        ELSIF v_abs * power(2::numeric, -v_exponent) <> v_mantissa THEN
            RETURN NULL;
        END IF;
    END IF;
    RETURN v_text;
END $$;

-- Sort key of an object key in UTF-16 code unit order (RFC 8785 section 3.2.3): the key
-- in CESU-8, i.e. each UTF-16 code unit encoded as UTF-8 encodes it, so that bytewise
-- order is code unit order. Without astral characters that is the key's UTF-8; an astral
-- character (4 bytes in UTF-8) becomes its surrogate pair (ED A0..AF xx, ED B0..BF xx),
-- which sorts after U+D7FF (ED 9F BF) and before U+E000 (EE 80 80), as in UTF-16. No
-- byte of it is 0xFF. Code points are read from the UTF-8 bytes, whatever the server
-- encoding; one statement, linear in the key's length.
CREATE OR REPLACE FUNCTION @schema@.run_proof_utf16_sort_key(p_key text) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
@pins@
AS $$
DECLARE
    v_out bytea;
BEGIN
    SELECT string_agg(CASE WHEN octet_length(u.b) < 4 THEN u.b ELSE
               -- the high and the low surrogate, each as 1110 1101, 10xx xxxx, 10xx xxxx
               -- (0xED8080 = 15564928; 0xD800 = 55296, 0xDC00 = 56320)
               decode(to_hex(15564928 + (((55296 + (u.code >> 10)) >> 6) & 63) * 256
                   + ((55296 + (u.code >> 10)) & 63)), 'hex')
               || decode(to_hex(15564928 + (((56320 + (u.code & 1023)) >> 6) & 63) * 256
                   + ((56320 + (u.code & 1023)) & 63)), 'hex')
           END, ''::bytea ORDER BY u.ordinality)
    INTO v_out
    FROM (
        SELECT c.b, c.ordinality, CASE WHEN octet_length(c.b) = 4 THEN
                   ((get_byte(c.b, 0) & 7) << 18) + ((get_byte(c.b, 1) & 63) << 12)
                   + ((get_byte(c.b, 2) & 63) << 6) + (get_byte(c.b, 3) & 63) - 65536
               END AS code  -- the code point minus 0x10000, for an astral character
        FROM (
            SELECT convert_to(t.ch, 'UTF8') AS b, t.ordinality
            FROM regexp_split_to_table(p_key, '') WITH ORDINALITY t(ch, ordinality)
        ) c
    ) u;
    RETURN coalesce(v_out, ''::bytea);
END $$;

-- Canonical JSON of a jsonb value of any depth, without recursion of function calls, so
-- that no nesting a writer can store reaches the stack limit: run_proof_jcs_node hands a
-- value over to it 32 levels down (p_depth: the levels above p_value). A loop with an
-- explicit stack, linear in the size of the value: a container pushes its closing
-- bracket, then its members in reverse canonical order (an object's by their keys' UTF-16
-- sort keys, an array's by index), each as its ready text ("," unless it comes first,
-- `"key":` in an object, and a scalar's token) or, for a nested container, its text
-- before it and the container; popping writes texts and expands containers. Scalars as in
-- run_proof_jcs_node. NULL as soon as a container sits deeper than 128 levels
-- (docs/json-nesting.md) or a number cannot be represented.
-- p_explain: instead of the canonical text, why it is NULL (see run_proof_jcs_problem):
-- the whole value is walked, for its depth, and the first refused number is kept.
CREATE OR REPLACE FUNCTION @schema@.run_proof_jcs_walk(
    p_value jsonb, p_exact boolean, p_explain boolean, p_depth integer
) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
@pins@
AS $$
DECLARE
    v_texts text[] := ARRAY[NULL]::text[];   -- a stack entry: a text to write, or NULL...
    v_values jsonb[] := ARRAY[p_value];      -- ...and then the value to expand here,
    v_depths integer[] := ARRAY[p_depth];    -- the levels above it,
    v_pointers text[] := ARRAY[''];          -- its JSON Pointer (RFC 6901), p_explain only
    v_top integer := 1;
    v_parts text[] := ARRAY[]::text[];
    v_count integer := 0;
    v_deepest integer := 0;
    v_problem text;
    v_value jsonb;
    v_pointer text;
    v_depth integer;
    v_kind text;
    v_token text;
    v_prefixes text[];
    v_tokens text[];
    v_children jsonb[];
    v_steps text[];
    v_n integer;
    v_abs numeric;
BEGIN
    IF p_exact IS NULL OR p_explain IS NULL OR p_depth IS NULL THEN
        RETURN NULL;
    END IF;
    IF p_value IS NULL THEN
        RETURN CASE WHEN p_explain THEN NULL ELSE 'null' END;
    END IF;
    WHILE v_top > 0 LOOP
        IF v_texts[v_top] IS NOT NULL THEN
            v_count := v_count + 1;
            v_parts[v_count] := v_texts[v_top];
            v_top := v_top - 1;
            CONTINUE;
        END IF;
        v_value := v_values[v_top];
        v_pointer := v_pointers[v_top];
        v_depth := v_depths[v_top] + 1;  -- this value's level, if it is a container
        v_top := v_top - 1;
        v_kind := jsonb_typeof(v_value);
        IF v_kind IN ('object', 'array') THEN
            v_deepest := greatest(v_deepest, v_depth);
            IF v_depth > 128 AND NOT p_explain THEN
                RETURN NULL;  -- docs/json-nesting.md: at most 128 levels
            END IF;
        END IF;
        IF v_kind = 'object' THEN
            SELECT array_agg(c.prefix ORDER BY c.sort_key DESC),
                   array_agg(c.token ORDER BY c.sort_key DESC),
                   array_agg(c.child ORDER BY c.sort_key DESC),
                   array_agg(c.step ORDER BY c.sort_key DESC)
            INTO v_prefixes, v_tokens, v_children, v_steps
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
                               ELSE @schema@.run_proof_jcs_number(e.value::numeric, p_exact) END
                           ELSE e.value::text
                       END AS token,
                       e.value AS child,
                       CASE WHEN p_explain THEN replace(replace(e.key, '~', '~0'), '/', '~1') END
                           AS step
                FROM jsonb_each(v_value) e
            ) c;
            v_token := '{';
            v_texts[v_top + 1] := '}';
        ELSIF v_kind = 'array' THEN
            SELECT array_agg(''::text ORDER BY a.ordinality DESC),
                   array_agg(CASE jsonb_typeof(a.value)
                           WHEN 'object' THEN NULL
                           WHEN 'array' THEN NULL
                           WHEN 'number' THEN CASE
                               WHEN octet_length(a.value::text) <= 15 AND a.value::text ~
                                   E'^-?(?:[1-9][0-9]*(?:\\.[0-9]*[1-9])?|0\\.0{0,5}[1-9](?:[0-9]*[1-9])?|0)$'
                                   THEN a.value::text
                               ELSE @schema@.run_proof_jcs_number(a.value::numeric, p_exact) END
                           ELSE a.value::text
                       END ORDER BY a.ordinality DESC),
                   array_agg(a.value ORDER BY a.ordinality DESC),
                   array_agg((a.ordinality - 1)::text ORDER BY a.ordinality DESC)
            INTO v_prefixes, v_tokens, v_children, v_steps
            FROM jsonb_array_elements(v_value) WITH ORDINALITY a(value, ordinality);
            v_token := '[';
            v_texts[v_top + 1] := ']';
        ELSIF v_kind = 'number' THEN
            v_token := @schema@.run_proof_jcs_number(v_value::numeric, p_exact);
            IF v_token IS NULL THEN
                IF NOT p_explain THEN
                    RETURN NULL;  -- a number that cannot be represented
                END IF;
                IF v_problem IS NULL THEN
                    v_abs := abs(v_value::numeric);
                    v_token := v_value::text;
                    IF length(v_token) > 48 THEN  -- jsonb writes 1e-400 as 0.000...0001
                        v_token := left(v_token, 24) || '...' || right(v_token, 12)
                            || ' (' || length(v_token)::text || ' characters)';
                    END IF;
                    v_problem := CASE WHEN v_pointer = '' THEN '(root)' ELSE v_pointer END
                        || ': ' || CASE
                            WHEN v_abs >= power(2::numeric, 1024) - power(2::numeric, 970)
                                THEN 'overflow'
                            WHEN v_abs * power(2::numeric, 1075) <= 1 THEN 'underflow'
                            WHEN @schema@.run_proof_jcs_number(v_abs, false) IS NULL
                                THEN 'digits'
                            ELSE 'inexact' END
                        || ': ' || v_token;
                END IF;
                CONTINUE;
            END IF;
        ELSE
            v_token := v_value::text;  -- string, true, false, null
        END IF;
        -- A scalar's text, or a container's opening bracket
        IF NOT p_explain THEN
            v_count := v_count + 1;
            v_parts[v_count] := v_token;
        END IF;
        IF v_kind NOT IN ('object', 'array') THEN
            CONTINUE;  -- a scalar is written whole
        END IF;
        IF NOT p_explain THEN
            v_top := v_top + 1;  -- the closing bracket, set above
            v_values[v_top] := NULL;
        END IF;
        v_n := coalesce(array_length(v_prefixes, 1), 0);
        FOR v_i IN 1 .. v_n LOOP
            IF v_tokens[v_i] IS NULL THEN
                -- a container, or a number that cannot be represented: expanded when
                -- popped, in canonical order (so that p_explain names the first)
                v_top := v_top + 1;
                v_texts[v_top] := NULL;
                v_values[v_top] := v_children[v_i];
                v_depths[v_top] := v_depth;
                IF p_explain THEN
                    v_pointers[v_top] := v_pointer || '/' || v_steps[v_i];
                ELSE
                    v_top := v_top + 1;
                    v_texts[v_top] := CASE WHEN v_i < v_n THEN ',' ELSE '' END
                        || v_prefixes[v_i];
                END IF;
            ELSIF NOT p_explain THEN
                v_top := v_top + 1;
                v_texts[v_top] := CASE WHEN v_i < v_n THEN ',' ELSE '' END || v_prefixes[v_i]
                    || v_tokens[v_i];
            END IF;
        END LOOP;
    END LOOP;
    IF p_explain THEN
        IF v_deepest > 128 THEN
            RETURN '(root): nesting: ' || v_deepest::text || ' levels';
        END IF;
        RETURN v_problem;
    END IF;
    RETURN array_to_string(v_parts, '');
END $$;

-- RFC 8785 canonical JSON of a jsonb value, one container per call: an object's members
-- sorted by their keys' UTF-16 sort keys (an ASCII key's bytes as they are), an array's
-- elements in order, scalars in place, nested containers by a call one level down (from
-- 32 levels on, by run_proof_jcs_walk, which needs no stack). p_exact as in
-- run_proof_jcs_number. SQL NULL gives 'null'; NULL means that a number in the value
-- cannot be represented.
--
-- Numbers: the text jsonb stores (numeric, never an exponent) is already canonical when
-- it has at most 15 characters, no trailing fraction zeros, and 1e-6 <= |x| < 1e15 (or is
-- 0): a decimal of at most 15 significant digits (DBL_DIG) is the only one of that many
-- digits that rounds to its double, so it is the double's shortest round-trip form, ES6
-- lays it out as written, and it is exactly the value stored. Every other number goes
-- through run_proof_jcs_number. Strings, true, false and null: jsonb's own text output,
-- whose string escapes are exactly JCS's.
CREATE OR REPLACE FUNCTION @schema@.run_proof_jcs_node(
    p_value jsonb, p_exact boolean, p_depth integer
) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
@pins@
AS $$
DECLARE
    v_kind text;
    v_out text;
BEGIN
    IF p_exact IS NULL OR p_depth IS NULL THEN
        RETURN NULL;
    END IF;
    IF p_value IS NULL THEN
        RETURN 'null';
    END IF;
    IF p_depth >= 32 THEN
        RETURN @schema@.run_proof_jcs_walk(p_value, p_exact, false, p_depth);
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
                       ELSE @schema@.run_proof_jcs_number(e.value::numeric, p_exact) END
                   WHEN 'object' THEN @schema@.run_proof_jcs_node(e.value, p_exact, p_depth + 1)
                   WHEN 'array' THEN @schema@.run_proof_jcs_node(e.value, p_exact, p_depth + 1)
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
                       ELSE @schema@.run_proof_jcs_number(a.value::numeric, p_exact) END
                   WHEN 'object' THEN @schema@.run_proof_jcs_node(a.value, p_exact, p_depth + 1)
                   WHEN 'array' THEN @schema@.run_proof_jcs_node(a.value, p_exact, p_depth + 1)
                   ELSE a.value::text
               END, chr(1)), ',' ORDER BY a.ordinality) || ']'
        INTO v_out
        FROM jsonb_array_elements(p_value) WITH ORDINALITY a(value, ordinality);
        v_out := coalesce(v_out, '[]');
    ELSIF v_kind = 'number' THEN
        RETURN @schema@.run_proof_jcs_number(p_value::numeric, p_exact);
    ELSE
        RETURN p_value::text;
    END IF;
    IF strpos(v_out, chr(1)) > 0 THEN
        RETURN NULL;
    END IF;
    RETURN v_out;
END $$;

-- Hash chain v1's reading of stored JSON: every number the double it denotes; NULL when
-- the stored-number rule refuses one. Equals Python's canonicalize_stored_json(value::text).
CREATE OR REPLACE FUNCTION @schema@.run_proof_jcs(p_value jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
@pins@
AS $$
BEGIN
    RETURN @schema@.run_proof_jcs_node(p_value, false, 0);
END $$;

-- As run_proof_jcs, and NULL also when a number's canonical form would round it (see
-- run_proof_jcs_number): every non-NULL result denotes exactly the stored numbers.
CREATE OR REPLACE FUNCTION @schema@.run_proof_jcs_exact(p_value jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
@pins@
AS $$
BEGIN
    RETURN @schema@.run_proof_jcs_node(p_value, true, 0);
END $$;

-- Why the canonical form of p_value is NULL. A value nested deeper than 128 levels
-- (docs/json-nesting.md): `(root): nesting: 2000 levels`. Otherwise the JSON Pointer
-- (RFC 6901) of the first refused number in canonical order, the reason, and the number
-- as stored, e.g. `/params/max_tokens: digits: 2798.0000000000000000001` (`(root)` for
-- the value itself). Reasons: overflow, underflow, digits (the stored-number rule),
-- inexact (p_exact only). NULL when nothing is refused.
CREATE OR REPLACE FUNCTION @schema@.run_proof_jcs_problem(p_value jsonb, p_exact boolean)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
@pins@
AS $$
BEGIN
    RETURN @schema@.run_proof_jcs_walk(p_value, p_exact, true, 0);
END $$;

-- A timestamp in hash chain v1's form, `YYYY-MM-DDTHH:MM:SS.ffffffZ` in UTC (a
-- timestamptz holds whole microseconds). NULL for infinity and years outside 1-9999,
-- which the format refuses.
CREATE OR REPLACE FUNCTION @schema@.run_proof_canonical_timestamp(p_value timestamptz)
RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
@pins@
AS $$
BEGIN
    -- The bounds exclude -infinity and infinity too; their literals are read under the
    -- pinned DateStyle and TimeZone (and are ISO with an explicit offset besides).
    IF p_value < '0001-01-01 00:00:00+00'::timestamptz
       OR p_value >= '10000-01-01 00:00:00+00'::timestamptz THEN
        RETURN NULL;
    END IF;
    RETURN to_char(p_value AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
END $$;

-- --- hash chain v1 (../shared/spec/hash-chain-v1.md, "Records" and "Chain") ----------------
-- Each record is written out with its keys in sorted (here: ASCII) order. Text fields go
-- through to_json, whose escapes are JCS's (\b \f \n \r \t \" \\ and \u00xx, lowercase,
-- for the other controls); SQL NULL is JSON null. An integer beyond +-(2^53-1) is taken
-- as the double it denotes, as the Python reader takes it; doubles and timestamps are
-- written in place, their rare forms through the functions above.

-- A JSON integer field: NULL as null, +-(2^53-1) as written, beyond as its double.
CREATE OR REPLACE FUNCTION @schema@.run_proof_v1_integer(p_value bigint) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
@pins@
AS $$
BEGIN
    IF p_value IS NULL THEN
        RETURN 'null';
    END IF;
    IF p_value BETWEEN -9007199254740991 AND 9007199254740991 THEN
        RETURN p_value::text;
    END IF;
    RETURN @schema@.run_proof_jcs_double(p_value::double precision);
END $$;

CREATE OR REPLACE FUNCTION @schema@.run_proof_v1_header_canonical(
    p_tenant_id text, p_run_id text, p_trace_id text, p_agent_id text, p_plan_id text,
    p_plan jsonb, p_started_at timestamptz
) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
@pins@
AS $$
BEGIN
    RETURN '{"agent_id":' || coalesce(to_json(p_agent_id)::text, 'null')
        || ',"kind":"trace"'
        || ',"plan":' || @schema@.run_proof_jcs_node(p_plan, false, 0)
        || ',"plan_id":' || coalesce(to_json(p_plan_id)::text, 'null')
        || ',"run_id":' || coalesce(to_json(p_run_id)::text, 'null')
        || ',"started_at":' || CASE WHEN p_started_at IS NULL THEN 'null' ELSE
               '"' || @schema@.run_proof_canonical_timestamp(p_started_at) || '"' END
        || ',"tenant_id":' || coalesce(to_json(p_tenant_id)::text, 'null')
        || ',"trace_id":' || coalesce(to_json(p_trace_id)::text, 'null')
        || ',"v":1}';
END $$;

-- genesis_hash = H(C(header)), 64 lowercase hex; NULL when the header cannot be hashed.
CREATE OR REPLACE FUNCTION @schema@.run_proof_v1_genesis_hash(
    p_tenant_id text, p_run_id text, p_trace_id text, p_agent_id text, p_plan_id text,
    p_plan jsonb, p_started_at timestamptz
) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
@pins@
AS $$
BEGIN
    RETURN encode(sha256(convert_to(@schema@.run_proof_v1_header_canonical(
        p_tenant_id, p_run_id, p_trace_id, p_agent_id, p_plan_id, p_plan, p_started_at
    ), 'UTF8')), 'hex');
END $$;

-- H(prev || record), the link of the chain (step hash and root hash): prev the raw 32 bytes
-- of the hash before it, given as 64 lowercase hex digits; NULL when prev is not that or the
-- record is NULL (cannot be represented).
CREATE OR REPLACE FUNCTION @schema@.run_proof_v1_link_hash(p_prev_hash text, p_record text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
@pins@
AS $$
BEGIN
    IF p_prev_hash IS NULL OR p_prev_hash !~ '^[0-9a-f]{64}$' THEN
        RETURN NULL;
    END IF;
    RETURN encode(sha256(decode(p_prev_hash, 'hex') || convert_to(p_record, 'UTF8')), 'hex');
END $$;

-- C(step), the step record of hash chain v1. The two doubles and the two integers are
-- written here in their common forms (a call less each, per step), their rare forms
-- (exponents, -0, NaN, beyond 2^53) through run_proof_jcs_double / run_proof_v1_integer.
CREATE OR REPLACE FUNCTION @schema@.run_proof_v1_step_canonical(
    p_tenant_id text, p_run_id text, p_step_index bigint, p_skill_id text, p_skill_name text,
    p_params jsonb, p_status text, p_outcome_category text, p_outcome_code text,
    p_outcome_data jsonb, p_cost_cents double precision, p_duration_ms double precision,
    p_retry_count bigint, p_timestamp timestamptz
) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
@pins@
AS $$
DECLARE
    v_cost text := p_cost_cents::text;
    v_duration text := p_duration_ms::text;
    v_step_index text := p_step_index::text;
    v_retry_count text := p_retry_count::text;
    v_timestamp text;
BEGIN
    -- float8out without an exponent, other than -0, NaN and Infinity: the ES6 form already
    IF v_cost IS NULL THEN
        v_cost := 'null';
    ELSIF strpos(v_cost, 'e') > 0 OR NOT v_cost ~ '^-?[0-9]' OR p_cost_cents = 0 THEN
        v_cost := @schema@.run_proof_jcs_double(p_cost_cents);
    END IF;
    IF v_duration IS NULL THEN
        v_duration := 'null';
    ELSIF strpos(v_duration, 'e') > 0 OR NOT v_duration ~ '^-?[0-9]' OR p_duration_ms = 0 THEN
        v_duration := @schema@.run_proof_jcs_double(p_duration_ms);
    END IF;
    IF v_step_index IS NULL OR p_step_index NOT BETWEEN 0 AND 9007199254740991 THEN
        v_step_index := @schema@.run_proof_v1_integer(p_step_index);
    END IF;
    IF v_retry_count IS NULL OR p_retry_count NOT BETWEEN 0 AND 9007199254740991 THEN
        v_retry_count := @schema@.run_proof_v1_integer(p_retry_count);
    END IF;
    IF p_timestamp IS NULL THEN
        v_timestamp := 'null';
    ELSE
        v_timestamp := '"' || @schema@.run_proof_canonical_timestamp(p_timestamp) || '"';
    END IF;
    RETURN '{"cost_cents":' || v_cost
        || ',"duration_ms":' || v_duration
        || ',"kind":"step"'
        || ',"outcome_category":' || coalesce(to_json(p_outcome_category)::text, 'null')
        || ',"outcome_code":' || coalesce(to_json(p_outcome_code)::text, 'null')
        || ',"outcome_data":' || @schema@.run_proof_jcs_node(p_outcome_data, false, 0)
        || ',"params":' || @schema@.run_proof_jcs_node(p_params, false, 0)
        || ',"retry_count":' || v_retry_count
        || ',"run_id":' || coalesce(to_json(p_run_id)::text, 'null')
        || ',"skill_id":' || coalesce(to_json(p_skill_id)::text, 'null')
        || ',"skill_name":' || coalesce(to_json(p_skill_name)::text, 'null')
        || ',"status":' || coalesce(to_json(p_status)::text, 'null')
        || ',"step_index":' || v_step_index
        || ',"tenant_id":' || coalesce(to_json(p_tenant_id)::text, 'null')
        || ',"timestamp":' || v_timestamp
        || ',"v":1}';
END $$;

-- step_hash = H(prev || C(step)), prev the raw 32 bytes of the previous step hash (or of
-- the genesis hash), given as 64 lowercase hex digits; NULL when prev is not that or the
-- step cannot be hashed.
CREATE OR REPLACE FUNCTION @schema@.run_proof_v1_step_hash(
    p_prev_hash text,
    p_tenant_id text, p_run_id text, p_step_index bigint, p_skill_id text, p_skill_name text,
    p_params jsonb, p_status text, p_outcome_category text, p_outcome_code text,
    p_outcome_data jsonb, p_cost_cents double precision, p_duration_ms double precision,
    p_retry_count bigint, p_timestamp timestamptz
) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
@pins@
AS $$
BEGIN
    RETURN @schema@.run_proof_v1_link_hash(p_prev_hash, @schema@.run_proof_v1_step_canonical(
        p_tenant_id, p_run_id, p_step_index, p_skill_id, p_skill_name, p_params, p_status,
        p_outcome_category, p_outcome_code, p_outcome_data, p_cost_cents, p_duration_ms,
        p_retry_count, p_timestamp
    ));
END $$;

CREATE OR REPLACE FUNCTION @schema@.run_proof_v1_seal_canonical(
    p_tenant_id text, p_run_id text, p_status text, p_completed_at timestamptz,
    p_chain_length bigint
) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
@pins@
AS $$
BEGIN
    RETURN '{"chain_length":' || @schema@.run_proof_v1_integer(p_chain_length)
        || ',"completed_at":' || CASE WHEN p_completed_at IS NULL THEN 'null' ELSE
               '"' || @schema@.run_proof_canonical_timestamp(p_completed_at) || '"' END
        || ',"kind":"seal"'
        || ',"run_id":' || coalesce(to_json(p_run_id)::text, 'null')
        || ',"status":' || coalesce(to_json(p_status)::text, 'null')
        || ',"tenant_id":' || coalesce(to_json(p_tenant_id)::text, 'null')
        || ',"v":1}';
END $$;

-- root_hash = H(head || C(seal)), head the last step hash (or the genesis hash) in hex; NULL
-- when head is not 64 lowercase hex digits or the seal cannot be hashed.
CREATE OR REPLACE FUNCTION @schema@.run_proof_v1_root_hash(
    p_head_hash text, p_tenant_id text, p_run_id text, p_status text,
    p_completed_at timestamptz, p_chain_length bigint
) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
@pins@
AS $$
BEGIN
    RETURN @schema@.run_proof_v1_link_hash(p_head_hash, @schema@.run_proof_v1_seal_canonical(
        p_tenant_id, p_run_id, p_status, p_completed_at, p_chain_length
    ));
END $$;
