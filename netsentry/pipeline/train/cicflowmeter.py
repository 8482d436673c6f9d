"""CICFlowMeter CSVs (CICIDS2017 and kin) → labelled flow features; cross-validating :class:`FlowClassifier` on them.

**Column names.** The same feature is spelled differently by the original CICIDS2017 CSVs (``" Destination Port"``,
``"Total Length of Fwd Packets"``, ``"Init_Win_bytes_forward"``, leading spaces), the improved re-labelled
CICIDS2017 (``"Dst Port"``, ``"Total Fwd Packet"``, plus ``id`` and ``Attempted Category``), CICFlowMeter-V3/V4
and CSE-CIC-IDS2018 (``"Tot Fwd Pkts"``, ``"Flow Byts/s"``, ``"Init Fwd Win Byts"``) and the Python
``cicflowmeter`` (``flow_byts_s``). A header is reduced to its words: lower case, split at anything that is not a
letter or digit, abbreviations expanded (tot→total, pkt(s)→packet, byt(s)→bytes, len→length, seg→segment,
cnt→count, var→variance, blk/b→bulk, src/source, dst/destination, fwd/forward, bwd/backward, CICFlowMeter's
``CWE`` typo→cwr, ``totlen``→total length), "of"/"per" dropped, taken in any order (``Min Packet Length`` =
``Pkt Len Min``), then looked up in :data:`CANONICAL_FEATURES`. Unrecognised columns (e.g. CICIDS2017's duplicated
``Fwd Header Length.1``) are ignored and listed in :attr:`CicDataset.ignored_columns`; only the features present in
every file are kept, in :data:`CANONICAL_FEATURES` order.

**Dropped columns** (identifiers and leaky helpers, never features): flow id, source/destination IP, source port,
timestamp, ``id`` and ``Attempted Category`` (a label helper, used only to find attempted attacks). In CICIDS2017
one attacker address (172.16.0.1) sends every attack flow, so the addresses would give the label away. The
**destination port and the protocol are kept as features**: the service attacked is a legitimate signal (e.g.
SSH-Patator hits port 22), though it makes the model port-aware.

**Labels.** Stripped, whitespace collapsed, the en dash (or the U+FFFD that a cp1252 dash becomes, as in the
original ``Web Attack – Brute Force``) written ``-``, and any casing of ``benign`` written ``BENIGN``; other labels
keep their spelling. Rows without a label (the original CSVs end with empty lines) are dropped
(``missing_label``). *Attempted* attacks of the improved CICIDS2017 (Engelen et al.: label ``"<attack> -
Attempted"`` or ``Attempted Category`` ≠ -1) are flows in which the attack never got through and carry no
malicious payload; by default (``attempted="benign"``) they are relabelled ``BENIGN``, as the relabelling's
authors suggest for training, rather than taught as the attack; ``"keep"`` makes each its own class
(``"<attack> - Attempted"``), ``"drop"`` removes them. (The bundled samples have none.)

**Non-finite values.** CICFlowMeter writes ``Infinity``/``NaN`` for rates of zero-duration flows. With
``nonfinite="replace"`` (default) +inf becomes :data:`INF_REPLACEMENT` (1e15, beyond any real rate: CICIDS2017's
largest is about 2e9), -inf its negative and NaN (also an unparseable cell) 0; each is counted in
:attr:`CicDataset.values_replaced`. ``nonfinite="drop"`` drops such rows instead (``non_finite``).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support
from sklearn.model_selection import StratifiedKFold

from netsentry.models.flow_classifier import FlowClassifier
from netsentry.pipeline.core.errors import ConfigError, InputNotFoundError, NoUsableDataError, SchemaError

BENIGN = "BENIGN"
INF_REPLACEMENT = 1e15
AttemptedPolicy = Literal["benign", "keep", "drop"]
NonFinitePolicy = Literal["replace", "drop"]

CANONICAL_FEATURES: tuple[str, ...] = (
    "dst_port", "protocol", "flow_duration",
    "total_fwd_packets", "total_bwd_packets", "total_length_fwd_packets", "total_length_bwd_packets",
    "fwd_packet_length_max", "fwd_packet_length_min", "fwd_packet_length_mean", "fwd_packet_length_std",
    "bwd_packet_length_max", "bwd_packet_length_min", "bwd_packet_length_mean", "bwd_packet_length_std",
    "flow_bytes_per_s", "flow_packets_per_s", "flow_iat_mean", "flow_iat_std", "flow_iat_max", "flow_iat_min",
    "fwd_iat_total", "fwd_iat_mean", "fwd_iat_std", "fwd_iat_max", "fwd_iat_min",
    "bwd_iat_total", "bwd_iat_mean", "bwd_iat_std", "bwd_iat_max", "bwd_iat_min",
    "fwd_psh_flags", "bwd_psh_flags", "fwd_urg_flags", "bwd_urg_flags", "fwd_rst_flags", "bwd_rst_flags",
    "fwd_header_length", "bwd_header_length", "fwd_packets_per_s", "bwd_packets_per_s",
    "packet_length_min", "packet_length_max", "packet_length_mean", "packet_length_std", "packet_length_variance",
    "fin_flag_count", "syn_flag_count", "rst_flag_count", "psh_flag_count", "ack_flag_count", "urg_flag_count",
    "cwr_flag_count", "ece_flag_count", "down_up_ratio", "average_packet_size",
    "fwd_segment_size_avg", "bwd_segment_size_avg",
    "fwd_bytes_per_bulk_avg", "fwd_packets_per_bulk_avg", "fwd_bulk_rate_avg",
    "bwd_bytes_per_bulk_avg", "bwd_packets_per_bulk_avg", "bwd_bulk_rate_avg",
    "subflow_fwd_packets", "subflow_fwd_bytes", "subflow_bwd_packets", "subflow_bwd_bytes",
    "fwd_init_win_bytes", "bwd_init_win_bytes", "fwd_act_data_packets", "fwd_segment_size_min",
    "active_mean", "active_std", "active_max", "active_min", "idle_mean", "idle_std", "idle_max", "idle_min",
    "icmp_code", "icmp_type", "total_tcp_flow_time",
)  # fmt: skip
"""Every CICFlowMeter flow feature we recognise, canonical snake_case names (the last five only in newer versions)."""

LABEL = "label"
ATTEMPTED_CATEGORY = "attempted_category"
IDENTIFIER_COLUMNS: tuple[str, ...] = ("flow_id", "src_ip", "dst_ip", "src_port", "timestamp", "id")
"""Identifier columns that are never read; ``attempted_category`` is read only to find attempted attacks."""

_SYNONYMS = {
    "destination": "dst", "source": "src", "forward": "fwd", "backward": "bwd", "tot": "total",
    "pkt": "packet", "pkts": "packet", "packets": "packet", "byt": "bytes", "byts": "bytes", "byte": "bytes",
    "len": "length", "seg": "segment", "average": "avg", "cnt": "count", "var": "variance", "blk": "bulk",
    "b": "bulk", "flags": "flag", "cwe": "cwr",
}  # fmt: skip
_STOPWORDS = frozenset({"of", "per"})
_ATTEMPTED_LABEL = r"(?:\s-\s*attempted$|^attempted\b)"  # "DoS Hulk - Attempted", "Attempted-relabel-as-Benign"


def _key(name: str) -> tuple[str, ...]:
    """Order-free word multiset of a column name (see the module docstring)."""
    words: list[str] = []
    for word in re.split(r"[^a-z0-9]+", str(name).strip().lower()):
        if not word or word in _STOPWORDS:
            continue
        words.extend(("total", "length") if word == "totlen" else (_SYNONYMS.get(word, word),))
    return tuple(sorted(words))


_CANONICAL_BY_KEY: dict[tuple[str, ...], str] = {
    _key(name): name for name in (*CANONICAL_FEATURES, LABEL, ATTEMPTED_CATEGORY, *IDENTIFIER_COLUMNS)
}
_FEATURES = frozenset(CANONICAL_FEATURES)


def canonical_name(column: str) -> str | None:
    """Canonical name of a CICFlowMeter column (a feature, ``label``, ``attempted_category`` or an identifier)."""
    return _CANONICAL_BY_KEY.get(_key(column))


@dataclass
class CicDataset:
    """Labelled CICFlowMeter flows: ``X`` numeric features (canonical names), ``y`` class labels (strings).

    ``source`` names each row's file. ``dropped`` counts dropped rows by reason (``missing_label``, ``attempted``,
    ``non_finite``); ``values_replaced`` counts replaced cells (``+inf``, ``-inf``, ``nan``; ``unparseable`` cells
    are also in ``nan``).
    """

    X: pd.DataFrame
    y: pd.Series
    source: pd.Series
    files: list[str]
    n_rows_read: int
    dropped: dict[str, int] = field(default_factory=dict)
    values_replaced: dict[str, int] = field(default_factory=dict)
    n_attempted: int = 0
    attempted_policy: str = "benign"
    nonfinite_policy: str = "replace"
    identifier_columns: list[str] = field(default_factory=list)  # canonical names of the dropped ones seen
    ignored_columns: dict[str, list[str]] = field(default_factory=dict)
    features_not_in_all_files: list[str] = field(default_factory=list)

    @property
    def n_rows_dropped(self) -> int:
        return sum(self.dropped.values())

    @property
    def feature_names(self) -> list[str]:
        return list(self.X.columns)

    def class_counts(self) -> dict[str, int]:
        """Rows per class, BENIGN first, then by name."""
        counts = Counter(self.y.to_numpy(dtype=object))
        return {c: counts[c] for c in _class_order(counts)}

    def describe(self) -> str:
        """One line for the terminal."""
        drop = ", ".join(f"{k} {v:,}" for k, v in self.dropped.items() if v) or "none"
        repl = ", ".join(f"{k} {v:,}" for k, v in self.values_replaced.items() if v) or "none"
        return (
            f"{len(self.X):,} rows from {len(self.files)} file(s) ({self.n_rows_read:,} read; dropped: {drop}; "
            f"replaced values: {repl}), {self.X.shape[1]} features, {len(self.class_counts())} classes"
        )


@dataclass
class _FileColumns:
    path: Path
    features: dict[str, str]  # raw header → canonical feature
    label: str
    attempted: str | None
    identifiers: list[str]
    ignored: list[str]


def read_cicflowmeter_csv(
    paths: Sequence[str | Path] | str | Path,
    *,
    attempted: AttemptedPolicy = "benign",
    nonfinite: NonFinitePolicy = "replace",
) -> CicDataset:
    """Read CICFlowMeter CSVs (any of the known column spellings) into one :class:`CicDataset`.

    Raises :class:`InputNotFoundError` for a missing file, :class:`SchemaError` for a file without a label column
    or without any recognised feature column (or not a CSV), :class:`NoUsableDataError` when no labelled row is left.
    """
    if attempted not in ("benign", "keep", "drop"):
        raise ConfigError(f"attempted must be 'benign', 'keep' or 'drop', got {attempted!r}")
    if nonfinite not in ("replace", "drop"):
        raise ConfigError(f"nonfinite must be 'replace' or 'drop', got {nonfinite!r}")
    files = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    if not files:
        raise ConfigError("no CICFlowMeter CSV given")
    layouts = [_columns(p) for p in files]
    present = [set(layout.features.values()) for layout in layouts]
    common = [f for f in CANONICAL_FEATURES if all(f in s for s in present)]
    if not common:
        raise SchemaError(f"the {len(files)} CSVs share no feature column; expected CICFlowMeter output from one tool")
    union = set().union(*present)

    xs, ys, sizes = [], [], []
    stats: Counter[str] = Counter()
    for layout in layouts:
        x, y = _read_rows(layout, common, attempted, nonfinite, stats)
        xs.append(x)
        ys.append(y)
        sizes.append(len(y))
    X = pd.concat(xs, ignore_index=True) if len(xs) > 1 else xs[0].reset_index(drop=True)
    y = pd.concat(ys, ignore_index=True) if len(ys) > 1 else ys[0].reset_index(drop=True)
    names = [str(p) for p in files]
    categories = list(dict.fromkeys(names))  # file order
    source = pd.Series(pd.Categorical(np.repeat(np.asarray(names, dtype=object), sizes), categories), name="source")
    if len(X) == 0:
        raise NoUsableDataError(
            f"no labelled rows left in {len(files)} CICFlowMeter CSV(s) "
            f"({stats['read']:,} read; dropped: {_reasons(stats) or 'none'})"
        )
    return CicDataset(
        X=X,
        y=y.astype("str").rename("label"),
        source=source,
        files=names,
        n_rows_read=stats["read"],
        dropped={r: stats[f"drop:{r}"] for r in ("missing_label", "attempted", "non_finite")},
        values_replaced={k: stats[f"value:{k}"] for k in ("+inf", "-inf", "nan", "unparseable")},
        n_attempted=stats["attempted"],
        attempted_policy=attempted,
        nonfinite_policy=nonfinite,
        identifier_columns=sorted({i for layout in layouts for i in layout.identifiers}),
        ignored_columns={str(layout.path): layout.ignored for layout in layouts if layout.ignored},
        features_not_in_all_files=[f for f in CANONICAL_FEATURES if f in union and f not in common],
    )


def _reasons(stats: Counter[str]) -> str:
    return ", ".join(f"{k[5:]} {v:,}" for k, v in stats.items() if k.startswith("drop:") and v)


def _columns(path: Path) -> _FileColumns:
    """Classify one file's header; raises for a missing file, no label, no feature."""
    if not path.is_file():
        what = "is a directory, not a CICFlowMeter CSV" if path.is_dir() else "CICFlowMeter CSV not found"
        raise InputNotFoundError(what, path=str(path))
    try:
        header = pd.read_csv(path, nrows=0, encoding_errors="replace").columns
    except pd.errors.EmptyDataError:
        raise SchemaError("empty file; expected a CICFlowMeter CSV with a header line", path=str(path)) from None
    except (pd.errors.ParserError, ValueError) as e:
        raise SchemaError(f"not a readable CSV ({str(e).splitlines()[0]})", path=str(path)) from None
    features: dict[str, str] = {}
    label = attempted = None
    identifiers, ignored = [], []
    for raw in header:
        name = canonical_name(raw)
        if name in _FEATURES and name not in features.values():
            features[raw] = name
        elif name == LABEL and label is None:
            label = raw
        elif name == ATTEMPTED_CATEGORY and attempted is None:
            attempted = raw
            identifiers.append(name)
        elif name in IDENTIFIER_COLUMNS:
            identifiers.append(name)
        else:
            ignored.append(str(raw))
    if label is None:
        raise SchemaError("no label column; expected a 'Label' column (any case, spaces ignored)", path=str(path))
    if not features:
        shown = ", ".join(repr(str(c).strip()) for c in header[:4])
        raise SchemaError(
            f"no CICFlowMeter feature column (expected e.g. 'Flow Duration', 'Dst Port', 'Flow Bytes/s'; "
            f"got {shown}{', ...' if len(header) > 4 else ''})",
            path=str(path),
        )
    return _FileColumns(path, features, label, attempted, identifiers, ignored)


def _read_rows(
    layout: _FileColumns, common: list[str], attempted: str, nonfinite: str, stats: Counter[str]
) -> tuple[pd.DataFrame, pd.Series]:
    """Read one file's kept columns; apply the label, attempted and non-finite rules (counted in ``stats``)."""
    raw_by_name = {v: k for k, v in layout.features.items()}
    feature_raw = [raw_by_name[f] for f in common]
    extra = [layout.attempted] if layout.attempted else []
    usecols = [*feature_raw, layout.label, *extra]
    path = str(layout.path)
    dtypes: dict[str, object] = {c: np.float64 for c in (*feature_raw, *extra)} | {layout.label: "str"}
    try:
        frame = pd.read_csv(layout.path, usecols=usecols, dtype=dtypes, encoding_errors="replace")
    except pd.errors.ParserError as e:
        raise SchemaError(f"malformed CSV ({str(e).splitlines()[0]})", path=path) from None
    except ValueError:  # a cell that is not a number: read as text, count what does not parse
        frame = pd.read_csv(layout.path, usecols=usecols, dtype="str", encoding_errors="replace")
        for col in (*feature_raw, *extra):
            text = frame[col]
            frame[col] = pd.to_numeric(text.str.strip(), errors="coerce").astype(np.float64)
            stats["value:unparseable"] += int((frame[col].isna() & text.notna()).sum())
    stats["read"] += len(frame)

    labels = _normalise_labels(frame[layout.label])
    missing = labels.isna().to_numpy()
    is_attempted = labels.str.contains(_ATTEMPTED_LABEL, case=False, regex=True, na=False).to_numpy()
    if layout.attempted:
        category = frame[layout.attempted].to_numpy(dtype=np.float64)
        is_attempted = is_attempted | ~np.isnan(category) & (category != -1) & (labels != BENIGN).to_numpy()
    is_attempted = is_attempted & ~missing
    stats["drop:missing_label"] += int(missing.sum())
    stats["attempted"] += int(is_attempted.sum())
    if attempted == "benign":
        labels = labels.mask(is_attempted, BENIGN)
    elif attempted == "keep":
        bare = is_attempted & ~labels.str.contains("attempted", case=False, na=False).to_numpy()
        labels = labels.mask(bare, labels + " - Attempted")
    keep = ~missing
    if attempted == "drop":
        keep &= ~is_attempted
        stats["drop:attempted"] += int(is_attempted.sum())

    values = frame[feature_raw].to_numpy(dtype=np.float64)[keep]  # boolean indexing copies: safe to write
    labels = labels[keep]
    pos, neg, nan = np.isposinf(values), np.isneginf(values), np.isnan(values)
    if nonfinite == "drop":
        finite_rows = ~(pos | neg | nan).any(axis=1)
        stats["drop:non_finite"] += int((~finite_rows).sum())
        values, labels = values[finite_rows], labels[finite_rows]
    else:
        stats["value:+inf"] += int(pos.sum())
        stats["value:-inf"] += int(neg.sum())
        stats["value:nan"] += int(nan.sum())
        values[pos], values[neg], values[nan] = INF_REPLACEMENT, -INF_REPLACEMENT, 0.0
    return pd.DataFrame(values, columns=common), labels.reset_index(drop=True)


def _normalise_labels(raw: pd.Series) -> pd.Series:
    """Strip, collapse whitespace, dashes as ``-``, ``BENIGN`` in capitals; empty → missing."""
    text = raw.astype("str")
    text = text.str.replace("[\ufffd\u2013\u2014]", "-", regex=True).str.replace(r"\s+", " ", regex=True).str.strip()
    text = text.mask(text == "", None)
    return text.mask(text.str.lower() == "benign", BENIGN)


def _class_order(classes: object) -> list[str]:
    names = sorted(set(classes))  # type: ignore[call-overload]
    return [c for c in names if c == BENIGN] + [c for c in names if c != BENIGN]


@dataclass
class CicCvResult:
    """Stratified k-fold cross-validation of a :class:`FlowClassifier` on a :class:`CicDataset`.

    ``per_class`` (rows, precision, recall, f1 per class) and ``confusion`` (rows = true class, columns =
    predicted, both in ``classes`` order) come from the pooled out-of-fold predictions ``oof_predictions``
    (indexed like the dataset rows used); ``fold_macro_f1`` is per fold, ``macro_f1_std`` its population std.
    Classes with fewer rows than folds are left out (``excluded_classes``).
    """

    folds: int
    seed: int
    classes: list[str]
    fold_macro_f1: list[float]
    macro_f1_mean: float
    macro_f1_std: float
    per_class: pd.DataFrame
    confusion: np.ndarray
    class_counts: dict[str, int]
    excluded_classes: dict[str, int]
    n_rows: int
    n_features: int
    wall_time_s: float
    oof_predictions: pd.Series
    data_summary: str = ""

    @property
    def attack_recall(self) -> float | None:
        """Share of attack rows predicted as any attack class (None without BENIGN or attacks)."""
        return self._binary()[0]

    @property
    def benign_false_positive_rate(self) -> float | None:
        """Share of BENIGN rows predicted as some attack class (None without BENIGN or attacks)."""
        return self._binary()[1]

    def _binary(self) -> tuple[float | None, float | None]:
        if BENIGN not in self.classes or len(self.classes) < 2:
            return None, None
        b = self.classes.index(BENIGN)
        attack_rows = self.confusion.sum() - self.confusion[b].sum()
        attack_as_attack = attack_rows - (self.confusion[:, b].sum() - self.confusion[b, b])
        benign_rows = self.confusion[b].sum()
        return float(attack_as_attack / attack_rows), float((benign_rows - self.confusion[b, b]) / benign_rows)

    def metrics(self) -> dict[str, float]:
        """Flat metric names → values (e.g. for ``mlflow.log_metrics``)."""
        out = {"cv_macro_f1_mean": self.macro_f1_mean, "cv_macro_f1_std": self.macro_f1_std}
        out |= {f"cv_macro_f1_fold{i}": v for i, v in enumerate(self.fold_macro_f1)}
        for cls, row in self.per_class.iterrows():
            safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(cls))
            out |= {f"cv_{m}_{safe}": float(row[m]) for m in ("precision", "recall", "f1")}
        if self.attack_recall is not None:
            out |= {"cv_attack_recall": self.attack_recall, "cv_benign_fpr": self.benign_false_positive_rate}
        return out | {"cv_wall_time_s": self.wall_time_s}


def cross_validate_cicids(
    dataset: CicDataset, folds: int = 5, seed: int = 0, *, model: FlowClassifier | None = None
) -> CicCvResult:
    """Stratified, shuffled k-fold CV of ``FlowClassifier(random_state=seed)`` (or of ``model`` with that seed).

    Raises :class:`ConfigError` for ``folds < 2`` and :class:`NoUsableDataError` without two classes of at least
    ``folds`` rows.
    """
    if folds < 2:
        raise ConfigError(f"folds must be at least 2, got {folds}")
    start = time.perf_counter()
    y_all = dataset.y.to_numpy(dtype=object)
    counts = Counter(y_all)
    excluded = {c: counts[c] for c in _class_order(counts) if counts[c] < folds}
    classes = [c for c in _class_order(counts) if c not in excluded]
    if len(classes) < 2:
        raise NoUsableDataError(
            f"cross-validation needs at least two classes with >= {folds} rows each; got "
            + ", ".join(f"{c} {n:,}" for c, n in counts.most_common())
        )
    rows = np.flatnonzero(~np.isin(y_all, list(excluded))) if excluded else np.arange(len(y_all))
    X = dataset.X.to_numpy(dtype=np.float64)[rows]
    y = y_all[rows]
    base = _model(model, seed)
    oof = np.empty(len(y), dtype=object)
    fold_f1: list[float] = []
    for train, test in StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(X, y):
        predicted = clone(base).fit(X[train], y[train]).predict(X[test])
        oof[test] = predicted
        fold_f1.append(float(f1_score(y[test], predicted, labels=classes, average="macro", zero_division=0)))
    precision, recall, f1, support = precision_recall_fscore_support(y, oof, labels=classes, zero_division=0)
    per_class = pd.DataFrame(
        {"rows": support.astype(int), "precision": precision, "recall": recall, "f1": f1},
        index=pd.Index(classes, name="class"),
    )
    return CicCvResult(
        folds=folds,
        seed=seed,
        classes=classes,
        fold_macro_f1=fold_f1,
        macro_f1_mean=float(np.mean(fold_f1)),
        macro_f1_std=float(np.std(fold_f1)),
        per_class=per_class,
        confusion=confusion_matrix(y, oof, labels=classes),
        class_counts={c: counts[c] for c in classes},
        excluded_classes=excluded,
        n_rows=len(y),
        n_features=X.shape[1],
        wall_time_s=time.perf_counter() - start,
        oof_predictions=pd.Series(oof, index=dataset.y.index[rows], name="predicted", dtype="str"),
        data_summary=dataset.describe(),
    )


def fit_cicids(dataset: CicDataset, seed: int = 0, *, model: FlowClassifier | None = None) -> FlowClassifier:
    """Fit ``FlowClassifier(random_state=seed)`` (or a clone of ``model`` with that seed) on all of ``dataset``."""
    return _model(model, seed).fit(dataset.X, dataset.y)


def _model(model: FlowClassifier | None, seed: int) -> FlowClassifier:
    return FlowClassifier(random_state=seed) if model is None else clone(model).set_params(random_state=seed)


def format_cv_report(result: CicCvResult) -> str:
    """Plain-text summary: macro-F1 over folds, per-class table, confusion matrix."""
    lines = [
        f"{result.folds}-fold stratified CV (seed {result.seed}): {result.n_rows:,} rows, "
        f"{len(result.classes)} classes, {result.n_features} features, {result.wall_time_s:.1f} s",
    ]
    if result.data_summary:
        lines.append(f"data: {result.data_summary}")
    folds = " ".join(f"{v:.4f}" for v in result.fold_macro_f1)
    lines.append(f"macro-F1 {result.macro_f1_mean:.4f} ± {result.macro_f1_std:.4f} (folds: {folds})")
    if result.attack_recall is not None:
        lines.append(
            f"attack vs BENIGN: attack recall {result.attack_recall:.4f}, "
            f"benign false-positive rate {result.benign_false_positive_rate:.4f}"
        )
    width = max(len("class"), *(len(c) for c in result.classes))
    lines += ["", f"{'class':<{width}}  {'rows':>9}  {'precision':>9}  {'recall':>9}  {'f1':>9}"]
    for cls, row in result.per_class.iterrows():
        lines.append(
            f"{cls!s:<{width}}  {int(row['rows']):>9,}  {row['precision']:>9.4f}  {row['recall']:>9.4f}  "
            f"{row['f1']:>9.4f}"
        )
    lines += ["", "confusion (rows: true class, columns: predicted, numbered as the rows)"]
    cell = max(5, len(f"{int(result.confusion.max()):,}") + 1)
    lines.append(f"{'':<{width + 5}}" + "".join(f"{f'[{j}]':>{cell}}" for j in range(len(result.classes))))
    for i, cls in enumerate(result.classes):
        counts = "".join(f"{int(v):>{cell},}" for v in result.confusion[i])
        lines.append(f"{f'[{i}]':<4} {cls:<{width}}{counts}")
    if result.excluded_classes:
        left_out = ", ".join(f"{c} ({n:,})" for c, n in result.excluded_classes.items())
        lines += ["", f"left out (fewer rows than folds): {left_out}"]
    return "\n".join(lines)
