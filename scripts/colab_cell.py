# Set-up. On Colab this installs gdl (keeping Colab's own torch); anywhere else it does nothing.
import subprocess
import sys

if "google.colab" in sys.modules:
    GDL = "gdl[course] @ git+https://github.com/gdl-course/gdl"
    if subprocess.call([sys.executable, "-m", "pip", "install", "-q", GDL]) != 0:
        # py3nj (escnn's fast Clebsch-Gordan path) needs a Fortran compiler; without it escnn is slower.
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", GDL.replace("course", "data")])
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "escnn"])
