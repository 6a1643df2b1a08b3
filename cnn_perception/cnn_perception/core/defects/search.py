"""Memory-bank search: greedy k-center coreset, nearest normal patch (numpy / ONNX graph)."""

import numpy as np


def greedy_coreset(
    features: np.ndarray, n: int, seed: int = 0, proj_dim: int = 128, progress=None
) -> np.ndarray:
    """Pick n points by greedy k-center (farthest point) selection; return indices.

    Distances are computed in a random projection to `proj_dim` dimensions (as in
    PatchCore): it keeps the selection nearly the same at a fraction of the cost.
    """
    n_all = len(features)
    n = min(n, n_all)
    rng = np.random.default_rng(seed)
    x = features
    if features.shape[1] > proj_dim:
        proj = rng.standard_normal((features.shape[1], proj_dim)).astype(np.float32)
        x = features @ (proj / np.sqrt(proj_dim))
    x = np.ascontiguousarray(x, np.float32)
    sq = np.einsum('ij,ij->i', x, x)
    chosen = np.empty(n, np.int64)
    chosen[0] = int(rng.integers(n_all))
    min_d = np.full(n_all, np.inf, np.float32)
    for i in range(1, n + 1):
        c = x[chosen[i - 1]]
        d = sq - 2.0 * (x @ c) + float(c @ c)
        np.minimum(min_d, d, out=min_d)
        if i < n:
            chosen[i] = int(np.argmax(min_d))
        if progress is not None:
            progress(1)
    return chosen


def nearest_distance(
    feats: np.ndarray,
    memory: np.ndarray,
    mem_sq: np.ndarray,
    chunk: int = 4096,
    neg2_memory_t: np.ndarray | None = None,
) -> np.ndarray:
    """Return the Euclidean distance of each row of feats to its nearest memory row.

    min_j |f - m_j|^2 = |f|^2 + min_j (|m_j|^2 - 2 f.m_j): one matrix product, one
    in-place add and one min per chunk; |f|^2 is added after the min.
    """
    if neg2_memory_t is None:
        neg2_memory_t = np.ascontiguousarray(-2.0 * memory.T, np.float32)
    best = None
    for s in range(0, len(memory), chunk):
        d = feats @ neg2_memory_t[:, s : s + chunk]
        d += mem_sq[None, s : s + chunk]
        part = d.min(axis=1)
        best = part if best is None else np.minimum(best, part)
    return add_feature_norms(best, feats)


def add_feature_norms(partial: np.ndarray, feats: np.ndarray) -> np.ndarray:
    """sqrt(|f|^2 + min_j (|m_j|^2 - 2 f.m_j)): the distance from the partial minimum."""
    partial = partial + np.einsum('ij,ij->i', feats, feats)
    return np.sqrt(np.maximum(partial, 0.0))


def nearest_search_session(memory: np.ndarray, num_threads: int = 0):
    """ONNX Runtime graph for min_j (|m_j|^2 - 2 f.m_j), the memory bank built in.

    `nearest_distance` in ONNX Runtime's own kernels: for 1600 patches against 6400 bank
    entries of 40 features it takes 6.1 ms here against 9.7 ms for numpy's matrix product
    and min, the largest part of scoring on the CPU. |f|^2 and the square root are left
    to the caller (cheap per patch).
    """
    from onnx import TensorProto, helper, numpy_helper

    from cnn_perception.core.backends import make_session

    neg2_t = np.ascontiguousarray(-2.0 * memory.T, np.float32)
    sq = np.einsum('ij,ij->i', memory, memory).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node('MatMul', ['features', 'neg2_memory_t'], ['cross']),
            helper.make_node('Add', ['cross', 'memory_sq'], ['partial']),
            helper.make_node('ReduceMin', ['partial', 'axis'], ['nearest'], keepdims=0),
        ],
        'nearest_patch',
        [helper.make_tensor_value_info('features', TensorProto.FLOAT, ['n', memory.shape[1]])],
        [helper.make_tensor_value_info('nearest', TensorProto.FLOAT, ['n'])],
        [
            numpy_helper.from_array(neg2_t, 'neg2_memory_t'),
            numpy_helper.from_array(sq, 'memory_sq'),
            numpy_helper.from_array(np.array([1], np.int64), 'axis'),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 18)])
    model.ir_version = 8  # readable by every ONNX Runtime this project supports
    return make_session(model.SerializeToString(), 'cpu', num_threads)
