"""NVFlare client entry point shipped in every OmniFM-MONAI job (the code is omnifm_monai.flare.client).

The job builder copies this file into each site's ``custom/`` folder as ``omnifm_client.py``; the
site needs ``omnifm_monai`` installed.
"""

from omnifm_monai.flare.client import main

if __name__ == "__main__":
    main()
