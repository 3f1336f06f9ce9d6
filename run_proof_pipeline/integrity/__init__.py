"""Pure integrity core of hash-chain v1: canonical JSON, records, chain hashes, streaming
verification verdicts, test vectors and an RFC 9162 Merkle tree.  No I/O, no database."""

from run_proof_pipeline.integrity.canonical import (
    MAX_SAFE_INTEGER,
    CanonicalizationError,
    canonicalize,
    es6_number,
    parse_stored_json,
)
from run_proof_pipeline.integrity.chain import (
    ChainHashes,
    compute_chain,
    genesis_hash,
    is_hex_hash,
    root_hash,
    sha256,
    sha256_hex,
    step_hash,
)
from run_proof_pipeline.integrity.merkle import (
    MerkleAccumulator,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)
from run_proof_pipeline.integrity.records import (
    FORMAT_VERSION,
    header_record,
    seal_record,
    step_canonical_bytes,
    step_record,
)
from run_proof_pipeline.integrity.timestamps import (
    InvalidTimestamp,
    canonical_timestamp,
    parse_timestamp,
)
from run_proof_pipeline.integrity.vectors import VectorReport, check_vectors
from run_proof_pipeline.integrity.verdicts import (
    LEGACY_TRACE_REASON,
    Anchor,
    ChainVerifier,
    IntegrityFailure,
    IntegrityModel,
    StoredStep,
    StoredTrace,
    Verdict,
    VerificationStatus,
)

__all__ = [
    "FORMAT_VERSION",
    "LEGACY_TRACE_REASON",
    "MAX_SAFE_INTEGER",
    "MerkleAccumulator",
    "ProofError",
    "Anchor",
    "CanonicalizationError",
    "ChainHashes",
    "ChainVerifier",
    "IntegrityFailure",
    "IntegrityModel",
    "InvalidTimestamp",
    "StoredStep",
    "StoredTrace",
    "VectorReport",
    "Verdict",
    "VerificationStatus",
    "canonical_timestamp",
    "canonicalize",
    "check_vectors",
    "compute_chain",
    "consistency_proof",
    "es6_number",
    "genesis_hash",
    "header_record",
    "inclusion_proof",
    "is_hex_hash",
    "leaf_hash",
    "node_hash",
    "parse_stored_json",
    "parse_timestamp",
    "root_from_leaves",
    "root_hash",
    "seal_record",
    "sha256",
    "sha256_hex",
    "step_canonical_bytes",
    "step_hash",
    "step_record",
    "verify_consistency",
    "verify_inclusion",
]
