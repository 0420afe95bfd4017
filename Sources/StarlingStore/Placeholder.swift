public import KSRModules
