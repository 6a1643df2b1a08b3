"""Start the cnn_perception nodes for one platform (desktop, jetson or pi).

The node list, executables, parameter files and remappings come from
`cnn_perception.platforms`, the same module the one-process `pipeline` uses.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from cnn_perception import platforms
from launch import LaunchDescription

TRUE = ('true', 'True', '1', 'yes')


def _nodes(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    keys = [k for k in platforms.NODES if arg(f'enable_{k}') in TRUE]
    localize = arg('localize') in TRUE
    lifecycle, autostart = arg('lifecycle') in TRUE, arg('autostart') in TRUE
    entries = platforms.node_entries(
        arg('platform'),
        keys,
        arg('namespace'),
        arg('source') or None,
        arg('params_file') or None,
        arg('image_topic') or None,
        localize=localize,
        lifecycle=lifecycle,
        autostart=autostart,
    )
    sim = {'use_sim_time': arg('use_sim_time') in TRUE}
    # the one-process pipeline decides from --platform; separate node processes are told
    trim = '1' if arg('platform') in platforms.TRIM_HEAP else '0'
    if arg('single_process') in TRUE and entries:
        # All nodes under one executor (`pipeline`): frames pass between them without
        # DDS (intra.py) and one interpreter and runtime are loaded instead of four.
        cli = ['--platform', arg('platform'), '--nodes', ','.join(keys)]
        cli += ['--namespace', arg('namespace')]
        for name in ('source', 'params_file', 'image_topic'):
            if arg(name):
                cli += [f'--{name.replace("_", "-")}', arg(name)]
        cli += ['--localize'] if localize else []
        cli += ['--lifecycle'] if lifecycle else []
        cli += ['--no-autostart'] if lifecycle and not autostart else []
        cli += ['--ros-args', '--log-level', arg('log_level')]
        cli += ['-p', f'use_sim_time:={str(sim["use_sim_time"]).lower()}']
        return [
            Node(
                package='cnn_perception',
                executable='pipeline',
                arguments=cli,
                output='screen',
                emulate_tty=True,
            )
        ]
    return [
        Node(
            package='cnn_perception',
            executable=e.spec.executable,
            name=e.spec.name,
            namespace=e.namespace,
            parameters=[str(e.params_file), {**e.overrides, **sim}],
            remappings=list(e.remappings.items()),
            arguments=['--ros-args', '--log-level', arg('log_level')],
            additional_env={'CNN_PERCEPTION_TRIM_HEAP': trim},
            output='screen',
            emulate_tty=True,
        )
        for e in entries
    ]


def generate_launch_description():
    share = get_package_share_directory('cnn_perception')
    args = [
        DeclareLaunchArgument(
            'platform',
            default_value='desktop',
            choices=list(platforms.PLATFORMS),
            description='Hardware profile: selects config/<platform>.yaml',
        ),
        DeclareLaunchArgument(
            'source',
            default_value='',
            description='Camera source (empty: from the YAML), e.g. test:, '
            '0, v4l2:/dev/video0, file:<video>, dir:<folder>',
        ),
        DeclareLaunchArgument(
            'namespace',
            default_value=platforms.DEFAULT_NAMESPACE,
            description='Namespace of every node and topic',
        ),
        DeclareLaunchArgument(
            'params_file',
            default_value='',
            description='Parameters YAML (empty: the platform file)',
        ),
        DeclareLaunchArgument(
            'image_topic',
            default_value='',
            description='Topic the processing nodes take frames from (empty: the camera); '
            'a topic ending in /compressed is read as sensor_msgs/CompressedImage',
        ),
        DeclareLaunchArgument(
            'single_process',
            default_value='false',
            choices=['true', 'false'],
            description='Run the nodes in one process (the `pipeline` executable): camera '
            'frames reach the other nodes without DDS and the process loads one Python and '
            'one ONNX Runtime; what the Pi uses (its 450 MB budget is for one process)',
        ),
        DeclareLaunchArgument(
            'localize',
            default_value='false',
            choices=['true', 'false'],
            description='Classifier: also publish classifier/detections, a box around each '
            "recognised object from the classifier's own activations (true overrides the YAML)",
        ),
        DeclareLaunchArgument(
            'lifecycle',
            default_value='false',
            choices=['true', 'false'],
            description='Managed (lifecycle) nodes: `ros2 lifecycle set` or a lifecycle '
            'manager (nav2_lifecycle_manager) configures, activates, deactivates and cleans '
            'them up; deactivated nodes capture and compute nothing',
        ),
        DeclareLaunchArgument(
            'autostart',
            default_value='true',
            choices=['true', 'false'],
            description='With lifecycle: bring each node to active at start-up; false: '
            'leave them unconfigured for a lifecycle manager',
        ),
        DeclareLaunchArgument(
            'log_level',
            default_value='info',
            description='ROS log level: debug, info, warn, error',
        ),
        DeclareLaunchArgument(
            'use_sim_time',
            default_value='false',
            description='Use /clock (true when replaying a bag with --clock)',
        ),
    ]
    for key in platforms.NODES:
        args.append(
            DeclareLaunchArgument(
                f'enable_{key}',
                default_value='true',
                description=f'Start the {platforms.NODES[key].executable}',
            )
        )
    env = []
    # Fast DDS 3 (Kilted on) reads FASTDDS_DEFAULT_PROFILES_FILE and warns about the old
    # name; Fast DDS 2 (Humble, Jazzy) reads only the old one.
    fast_dds_2 = os.environ.get('ROS_DISTRO', 'jazzy') in ('humble', 'iron', 'jazzy')
    var = 'FASTRTPS_DEFAULT_PROFILES_FILE' if fast_dds_2 else 'FASTDDS_DEFAULT_PROFILES_FILE'
    if not {'FASTRTPS_DEFAULT_PROFILES_FILE', 'FASTDDS_DEFAULT_PROFILES_FILE'} & set(os.environ):
        # Frame-sized messages need a larger shared-memory segment (see the XML).
        env.append(SetEnvironmentVariable(var, os.path.join(share, 'config', 'fastdds.xml')))
    return LaunchDescription(args + env + [OpaqueFunction(function=_nodes)])
