"""The one-pass evaluation (OPE) metrics, pytracking's analysis rules: a tracker's boxes against the ground
truth -> success, precision and normalized-precision curves -> the figures papers report (AUC, P, NP, OP50,
OP75). LaSOT, LaSOT_ext, TNL2K, OTB and TrackingNet-style sets are scored with these; evaluate.py applies them
(and GOT-10k's own toolkit rules) to result folders.

    sequence_curves(pred, gt, visible, dataset)   -> one sequence's curves
    curve_scores([curves, ...])                    -> the figures (in %), sequences weighing equally
"""
import numpy as np
import torch

# The overlap thresholds are exactly pytracking's torch.arange(0, 1.05, 0.05) in float64: it yields
# 0.6500000000000001 and 0.7500000000000001 where 13 * 0.05 gives 0.65 and 0.75, and an IoU sitting
# exactly on a threshold must fall on the same side as in the reference.
SUCCESS_THRESHOLDS = torch.arange(0.0, 1.05, 0.05, dtype=torch.float64).numpy()  # 21 values, 0..1
CENTER_THRESHOLDS = np.arange(0, 51, dtype=np.float64)  # pixels 0..50; precision is read at 20
NORM_THRESHOLDS = np.arange(0, 51, dtype=np.float64) / 100.0  # 0..0.5; normalized precision at 0.2
PRECISION_AT = 20  # index into CENTER_THRESHOLDS (20 px) and NORM_THRESHOLDS (0.20)
OP50, OP75 = 10, 15  # indices of the 0.5 and 0.75 overlap thresholds

# Datasets that get pytracking's LaSOT-only rules: results shorter than the gt are an error, and
# frames where the target is not visible fail both center errors (elsewhere the normalized one passes).
# pytracking names the LaSOT extension 'lasot_extension_subset', so it does NOT get these rules.
LASOT_RULES = ('lasot',)


def clean_results(pred, gt, dataset):
    """A tracker's raw boxes (N, 4) -> boxes (T, 4) aligned with the ground truth, pytracking's rules.

    - NaN anywhere or a negative w/h is an error (a broken result file, not a tracking failure).
    - A box with zero w or h is replaced by the previous (already cleaned) box, frame 0 excepted.
    - Length: longer results are truncated; shorter ones are an error on LaSOT and padded with zero
      boxes (IoU 0, center far off) elsewhere.
    - Frame 0 is set to the ground truth (the tracker was given it).
    """
    pred = np.array(pred, dtype=np.float64).reshape(-1, 4)
    if np.isnan(pred).any() or (pred[:, 2:] < 0).any():
        raise ValueError("invalid result: NaN or negative width/height (pytracking refuses such files)")
    if np.isnan(gt).any():
        raise ValueError("ground truth has NaN boxes: this split's annotations are withheld "
                         "(score it on the benchmark's server: `evaluate.py pack`)")
    for i in range(1, len(pred)):
        if (pred[i, 2:] == 0).any():
            pred[i] = pred[i - 1]
    if len(pred) > len(gt):
        pred = pred[:len(gt)]
    elif len(pred) < len(gt):
        if dataset in LASOT_RULES:
            raise ValueError(f"result has {len(pred)} boxes for {len(gt)} frames (LaSOT: shorter results "
                             f"are an error)")
        pred = np.concatenate([pred, np.zeros((len(gt) - len(pred), 4))])
    pred[0] = gt[0]
    return pred


def iou_pytracking(pred, gt):
    """IoU of x,y,w,h boxes with pytracking's +1 pixel convention for the intersection: a box covers
    pixels x .. x+w-1, so the overlap side is min(x2) - max(x1) + 1; areas stay w*h. (T,4),(T,4)->(T,).
    (Algebraically the -1 and +1 cancel; they are kept so the floating-point rounding is the reference's.)"""
    tl = np.maximum(pred[:, :2], gt[:, :2])
    br = np.minimum(pred[:, :2] + pred[:, 2:] - 1.0, gt[:, :2] + gt[:, 2:] - 1.0)
    inter = np.clip(br - tl + 1.0, 0, None).prod(1)
    union = pred[:, 2:].prod(1) + gt[:, 2:].prod(1) - inter
    with np.errstate(divide='ignore', invalid='ignore'):
        return inter / union  # 0/0 only on invalid gt frames, which are overwritten


def center_error(pred, gt, normalized=False):
    """Distance of box centers, center = x + 0.5 * (w - 1) (pixel-index convention). Normalized: both
    centers divided by the gt's w and h first (so the error is in units of the target size). (T,)."""
    c_pred = pred[:, :2] + 0.5 * (pred[:, 2:] - 1.0)
    c_gt = gt[:, :2] + 0.5 * (gt[:, 2:] - 1.0)
    with np.errstate(divide='ignore', invalid='ignore'):  # zero-size gt: inf/NaN, overwritten (invalid)
        if normalized:
            c_pred, c_gt = c_pred / gt[:, 2:], c_gt / gt[:, 2:]
        return np.sqrt(((c_pred - c_gt) ** 2).sum(1))


def sequence_errors(pred, gt, visible, dataset):
    """Per-frame IoU, center error and normalized center error, pytracking's handling of frames:

    - a frame is valid when its gt has w > 0 and h > 0 and the target is visible (where the dataset
      has visibility flags);
    - invalid frames: IoU = -1 (fails every threshold), center error = inf (fails), normalized center
      error = -1 (passes every threshold);
    - LaSOT only: frames where the target is not visible get normalized center error = inf (fails too).
    """
    pred = clean_results(pred, gt, dataset)
    valid = (gt[:, 2] > 0) & (gt[:, 3] > 0) & visible
    iou = iou_pytracking(pred, gt)
    err = center_error(pred, gt)
    err_norm = center_error(pred, gt, normalized=True)
    iou[~valid], err[~valid], err_norm[~valid] = -1.0, np.inf, -1.0
    if dataset in LASOT_RULES:
        err[~visible], err_norm[~visible] = np.inf, np.inf
    if np.isnan(iou).any():
        raise ValueError("NaN in the computed overlaps")
    return iou, err, err_norm, valid


def sequence_curves(pred, gt, visible, dataset):
    """One sequence's success, precision and normalized-precision curves: the fraction of ALL its
    frames (invalid ones included, counted as failures above) with IoU strictly greater than each
    overlap threshold, and with center error <= each distance threshold."""
    iou, err, err_norm, valid = sequence_errors(pred, gt, visible, dataset)
    n = len(gt)  # pytracking's default: averaged over the full length, not over valid frames
    return {'success': (iou[:, None] > SUCCESS_THRESHOLDS[None]).sum(0) / n,  # (21,)
            'precision': (err[:, None] <= CENTER_THRESHOLDS[None]).sum(0) / n,  # (51,)
            'norm_precision': (err_norm[:, None] <= NORM_THRESHOLDS[None]).sum(0) / n,  # (51,)
            'mean_iou': float(iou[valid].mean()) if valid.any() else float('nan')}


def curve_scores(curves):
    """Figures (in %) from one or more sequences' curves; sequences weigh equally.
    AUC = mean of the success curve over its 21 thresholds (so a perfect tracker gets 20/21 = 95.24:
    IoU 1 is not > 1); precision at 20 px; normalized precision at 0.2; OP50/OP75 = success at 0.5/0.75."""
    success = np.mean([c['success'] for c in curves], 0) * 100
    precision = np.mean([c['precision'] for c in curves], 0) * 100
    norm_precision = np.mean([c['norm_precision'] for c in curves], 0) * 100
    return {'AUC': float(success.mean()), 'P': float(precision[PRECISION_AT]),
            'NP': float(norm_precision[PRECISION_AT]), 'OP50': float(success[OP50]),
            'OP75': float(success[OP75])}
