"""cnn_perception on an NVIDIA Jetson: perception.launch.py with config/jetson.yaml."""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource

from launch import LaunchDescription


def generate_launch_description():
    share = get_package_share_directory('cnn_perception')
    return LaunchDescription(
        [
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(
                    os.path.join(share, 'launch', 'perception.launch.py')
                ),
                launch_arguments={'platform': 'jetson'}.items(),
            ),
        ]
    )
