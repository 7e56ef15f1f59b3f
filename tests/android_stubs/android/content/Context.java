package android.content;

import android.content.pm.ApplicationInfo;
import android.content.res.AssetManager;

public abstract class Context {
    public abstract AssetManager getAssets();
    public abstract ContentResolver getContentResolver();
    public abstract ApplicationInfo getApplicationInfo();
    public abstract int checkSelfPermission(String permission);
}
