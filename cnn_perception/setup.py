"""ament_python build of cnn_perception: library, node executables, launch and config files."""

from glob import glob
from pathlib import Path
import sys

from setuptools import find_packages, setup

package_name = 'cnn_perception'


def node_scripts() -> list[str]:
    """Return one console script per node (`ros2 run cnn_perception <executable>`).

    From the NodeSpecs in cnn_perception/platforms.py: pure Python, importable from the
    source tree before anything is installed.
    """
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from cnn_perception import platforms

    return [s.console_script for s in platforms.NODES.values()]


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
        'console_scripts': node_scripts()
        + [
            'pipeline = cnn_perception.pipeline:main',
            'cnn_perception = cnn_perception.cli:main',
        ],
    },
)
