"""ament_python build of cnn_perception: library, node executables, launch and config files."""

from glob import glob

from setuptools import find_packages, setup

package_name = 'cnn_perception'

# Each node is both a console script (`ros2 run cnn_perception <name>`) and a module
# the one-process `pipeline` imports.
NODES = {
    'camera_node': 'cnn_perception.nodes.camera_node:main',
    'classifier_node': 'cnn_perception.nodes.classifier_node:main',
    'defect_detector_node': 'cnn_perception.nodes.defect_detector_node:main',
    'feature_map_node': 'cnn_perception.nodes.feature_map_node:main',
    'pipeline': 'cnn_perception.pipeline:main',
}

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('launch/*.launch.py')),
        ('share/' + package_name + '/config', glob('config/*.yaml') + glob('config/*.rviz')),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='cnn_perception developers',
    maintainer_email='cnn-perception@example.com',
    description='CNN perception for drones as ROS 2 nodes.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [f'{name} = {target}' for name, target in NODES.items()]
        + ['cnn_perception = cnn_perception.cli:main'],
    },
)
