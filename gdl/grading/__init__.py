"""The exercise grader: master notebooks -> student versions; submissions graded in a sandbox.

Trust split: the questions (public and hidden), the reference solution and the scoring run here, in the
instructor's process; each submission runs in a separate worker process inside a bubblewrap sandbox (no network,
read-only system, no access to tests or other submissions, resource limits) and only answers calls with data
(arrays, numbers; never pickle). See ``exercises/README.md`` for the layout and the commands.

Students check their work with ``check("ex01")`` after running their notebook's test cell.
"""

from gdl.grading._exercise import (
    CheckResult,
    Exercise,
    LocalSubmission,
    Question,
    RemoteSubmission,
    as_bool,
    assert_close,
    check,
    find_master,
    load_exercise,
    master_paths,
    questions,
    run_questions,
    shape_checked,
    torch_generator,
)
from gdl.grading._grade import (
    find_submissions,
    grade_folder,
    grade_submission,
    grader_errors,
    gradescope_results,
    regrade,
    regrade_errors,
    scan_submissions,
)
from gdl.grading._instructor import generate_student_versions, gradescope_bundle, solutions_page
from gdl.grading._notebook import student_version
from gdl.grading._protocol import Build
from gdl.grading._sandbox import (
    GraderError,
    ResourceLimits,
    SandboxUnavailable,
    Timeouts,
    isolation_mode,
    sandbox_description,
)

__all__ = [
    "Build", "CheckResult", "Exercise", "LocalSubmission", "Question", "RemoteSubmission", "as_bool", "assert_close",
    "check",
    "find_master", "load_exercise", "master_paths", "questions", "run_questions", "shape_checked", "torch_generator",
    "find_submissions", "grade_folder", "grade_submission", "gradescope_results", "regrade", "regrade_errors",
    "grader_errors", "scan_submissions",
    "generate_student_versions", "gradescope_bundle", "solutions_page", "student_version",
    "GraderError", "ResourceLimits", "SandboxUnavailable", "Timeouts", "isolation_mode", "sandbox_description",
]
