"""Install cabb_tf: the library, its gin files and its TFDS builders."""

import pathlib

import setuptools

_HERE = pathlib.Path(__file__).parent
_VERSION = {}
exec((_HERE / "cabb_tf" / "version.py").read_text(), _VERSION)  # pylint: disable=exec-used

# The stack is pinned: tensorflow-recommenders 0.7.7 needs Keras 2 (tf-keras),
# and tf-keras must match TensorFlow's minor version.
_INSTALL_REQUIRES = [
    "tensorflow==2.21.0",
    "tf-keras==2.21.0",
    "tensorflow-recommenders==0.7.7",
    "tensorflow-datasets>=4.9.10,<4.10",
    "importlib_resources>=6",  # tensorflow-datasets needs it at run time.
    "gin-config>=0.5.0",
    "absl-py>=2.1",
    "numpy>=1.26",
    "pandas>=2.2",
    "pyarrow>=17",  # fast multi-threaded CSV parsing and Parquet files.
    "scipy>=1.13",  # sparse matrices for the similarity computation.
    "tensorboard>=2.21,<2.22",
    "matplotlib>=3.8",  # PNG plots written by the experiment binaries.
]

_EXTRAS = {
    "test": [
        "pytest>=8",
        "pytest-xdist>=3.6",
        "hypothesis>=6.100",
        "dill",  # tfds.testing.DatasetBuilderTestCase needs it.
        "nbclient>=0.10",  # executes the notebooks in tests.
        "nbformat>=5.10",
        "ipykernel>=6.29",
        "zstandard>=0.22",  # writes the .zst logs the loader tests read.
    ],
    # Depends on apache-beam directly: the TFDS beam extra pins an old Beam
    # that conflicts with TensorFlow 2.21.
    "beam": [
        "apache-beam>=2.60",
        "google-crc32c>=1.5",  # Beam's TFRecord reader checks CRCs with it.
    ],
    "notebooks": [
        "jupyter",
        "nbclient>=0.10",
        "nbformat>=5.10",
        "ipykernel>=6.29",
    ],
}

setuptools.setup(
    name="cabb_tf",
    version=_VERSION["__version__"],
    description=("Click A, Buy B: multi-task conversion attribution with "
                 "taxonomy-aware similarity weights, in TensorFlow/Keras."),
    long_description=(_HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache 2.0",
    # TensorFlow 2.21 has wheels for Python 3.10-3.13. Tests run on 3.11 (CI)
    # and 3.12 (tests/install_test.py); 3.13 is allowed and was tried by
    # hand, untested (README.md, "Python versions").
    python_requires=">=3.11,<3.14",
    packages=setuptools.find_packages(include=["cabb_tf", "cabb_tf.*"]),
    # The gin files ship in the package (cabb_tf.gin_utils.GIN_DIR; a
    # checkout's gin/ links there), so an installed package finds them by
    # name from any directory.
    package_data={
        "cabb_tf": ["configs/*.gin", "configs/*/*.gin"],
        "cabb_tf.datasets": [
            "*/README.md", "*/CITATIONS.bib", "*/checksums.tsv",
            "*/dummy_data/*", "*/dummy_data/**/*",
        ],
    },
    install_requires=_INSTALL_REQUIRES,
    entry_points={"console_scripts": [
        "cabb-train=cabb_tf.cli:train",
        "cabb-reproduce=cabb_tf.cli:reproduce",
        "cabb-prepare=cabb_tf.cli:prepare",
        "cabb-similarity=cabb_tf.cli:similarity",
        "cabb-check-export=cabb_tf.cli:check_export",
    ]},
    extras_require=_EXTRAS,
    classifiers=[
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
