"""The functions of compiled mmcv 2.1.0's ``mmcv._ext`` that this package
does not implement: each exists (mmcv's ops check for their names at
import) and raises :class:`CompiledOpMissing` when called."""
import functools

# every name mmcv 2.1.0's ``mmcv/ops/*.py`` ask ``ext_loader.load_ext`` for
MMCV_EXT_NAMES = frozenset('''
active_rotated_filter_backward active_rotated_filter_forward
assign_score_withk_backward assign_score_withk_forward ball_query_forward
bbox_overlaps bezier_align_backward bezier_align_forward bias_act
border_align_backward border_align_forward box_iou_quadri box_iou_rotated
carafe_backward carafe_forward carafe_naive_backward carafe_naive_forward
chamfer_distance_backward chamfer_distance_forward contour_expand
convex_giou convex_iou correlation_backward correlation_forward
deform_conv_backward_input deform_conv_backward_parameters
deform_conv_forward deform_roi_pool_backward deform_roi_pool_forward
diff_iou_rotated_sort_vertices_forward dynamic_point_to_voxel_backward
dynamic_point_to_voxel_forward dynamic_voxelize_forward filtered_lrelu
filtered_lrelu_act_ furthest_point_sampling_forward
furthest_point_sampling_with_dist_forward fused_bias_leakyrelu
fused_indice_conv_forward gather_points_backward gather_points_forward
get_compiler_version get_compiling_cuda_version
get_indice_pairs_2d_backward get_indice_pairs_2d_forward
get_indice_pairs_3d_backward get_indice_pairs_3d_forward
get_indice_pairs_4d_forward group_points_backward group_points_forward
hard_voxelize_forward indice_conv_backward indice_conv_forward
indice_maxpool_backward indice_maxpool_forward
iou3d_boxes_overlap_bev_forward iou3d_nms3d_forward
iou3d_nms3d_normal_forward knn_forward masked_col2im_forward
masked_im2col_forward min_area_polygons modulated_deform_conv_backward
modulated_deform_conv_forward ms_deform_attn_backward ms_deform_attn_forward
nms nms_match nms_quadri nms_rotated pixel_group points_in_boxes_all_forward
points_in_boxes_cpu_forward points_in_boxes_part_forward
points_in_polygons_forward prroi_pool_backward prroi_pool_coor_backward
prroi_pool_forward psamask_backward psamask_forward
riroi_align_rotated_backward riroi_align_rotated_forward roi_align_backward
roi_align_forward roi_align_rotated_backward roi_align_rotated_forward
roi_pool_backward roi_pool_forward roiaware_pool3d_backward
roiaware_pool3d_forward roipoint_pool3d_forward
rotated_feature_align_backward rotated_feature_align_forward
sigmoid_focal_loss_backward sigmoid_focal_loss_forward
softmax_focal_loss_backward softmax_focal_loss_forward softnms
stack_ball_query_forward stack_group_points_backward
stack_group_points_forward sync_bn_backward_data sync_bn_backward_param
sync_bn_forward_mean sync_bn_forward_output sync_bn_forward_var
three_interpolate_backward three_interpolate_forward three_nn_forward
tin_shift_backward tin_shift_forward upfirdn2d
'''.split())

INSTALL_COMMAND = ('pip uninstall -y mmcv-lite && MMCV_WITH_OPS=1 pip install '
                   '--no-build-isolation mmcv==2.1.0')


class CompiledOpMissing(NotImplementedError):
    """An mmcv op that only mmcv built with its compiled ops provides."""


@functools.lru_cache(maxsize=None)
def missing_op(name):
    """The stand-in for ``mmcv._ext.<name>``: it takes any arguments and
    raises :class:`CompiledOpMissing`."""

    def op(*args, **kwargs):
        raise CompiledOpMissing(
            f'mmcv op {name!r} needs mmcv built with its compiled ops: this '
            f'mmcv has none (mmcv-lite) and mmacmix.ops does not implement '
            f'{name!r}. Install mmcv with its ops: {INSTALL_COMMAND}')

    op.__name__ = op.__qualname__ = name
    op.__doc__ = f'Not available without compiled mmcv: raises {name!r}.'
    return op
