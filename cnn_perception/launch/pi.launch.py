"""cnn_perception on a Raspberry Pi: perception.launch.py with config/pi.yaml, one process.

All nodes in one process (`single_process:=true`): frames pass between the nodes without
DDS and a single interpreter and ONNX Runtime are loaded (docs/benchmarks.md: 343-348 MB
peak for all four nodes with the INT8 classifier).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration

from launch import LaunchDescription


def generate_launch_description():
    share = get_package_share_directory('cnn_perception')
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                'single_process',
                default_value='true',
                choices=['true', 'false'],
                description='All nodes in one process (false: one process per node)',
            ),
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(
                    os.path.join(share, 'launch', 'perception.launch.py')
                ),
                launch_arguments={
                    'platform': 'pi',
                    'single_process': LaunchConfiguration('single_process'),
                }.items(),
            ),
        ]
    )
